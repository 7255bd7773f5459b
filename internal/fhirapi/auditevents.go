package fhirapi

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// AuditLog reads the audit trail: AuditEvents are served from it, not from the resource store.
type AuditLog interface {
	ListAuditEntries(ctx context.Context, f sqlstore.AuditFilter) ([]sqlstore.AuditEntry, error)
	GetAuditEntry(ctx context.Context, id string) (sqlstore.AuditEntry, error)
}

// auditTrailType is served from the audit trail when one is configured.
const auditTrailType = "AuditEvent"

func (a *API) servesAuditTrail(typ string) bool {
	return typ == auditTrailType && a.opts.AuditLog != nil
}

// refuseAuditWrite keeps the trail append-only: only the server writes AuditEvents.
func refuseAuditWrite() error {
	return fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "AuditEvents are written by the server only")
}

// auditAllowed decides access to the trail: the token's scopes must reach AuditEvent, and only
// without a narrowing, because the trail cannot be bounded to a patient or a granular scope.
func (a *API) auditAllowed(r *http.Request, in policy.Input) (policy.Decision, error) {
	d, err := a.authorize(r, in)
	if err != nil {
		return d, err
	}
	if d.Narrowing != nil {
		return d, fhir.Errorf(http.StatusForbidden, "forbidden", "the audit trail is not available to a token bounded to a patient or to granular scopes")
	}
	return d, nil
}

func (a *API) auditSearch(w http.ResponseWriter, r *http.Request, params url.Values) error {
	q := &search.Query{Types: []string{auditTrailType}}
	d, err := a.auditAllowed(r, policy.Input{Interaction: policy.SearchType, Type: auditTrailType, Query: q})
	if err != nil {
		return err
	}
	f, err := audit.FilterFromQuery(params)
	if err != nil {
		return fhir.Invalid("", "%v", err)
	}
	if f.Limit == 0 {
		f.Limit = a.opts.DefaultCount
	}
	entries, err := a.opts.AuditLog.ListAuditEntries(r.Context(), f)
	if err != nil {
		return err
	}
	kept := entries[:0]
	for _, e := range entries {
		if a.visible(r, d, &fhir.Resource{Type: auditTrailType, ID: e.ID, Body: e.Event}) {
			kept = append(kept, e)
			touched(r, &fhir.Resource{Type: auditTrailType, ID: e.ID})
		}
	}
	returned(r, len(kept))
	next := ""
	if len(entries) == f.Limit && len(entries) > 0 {
		p := cloneValues(params)
		p.Set("_cursor", strconv.FormatInt(entries[len(entries)-1].Seq, 10))
		next = a.opts.BaseURL + "/" + auditTrailType + "?" + p.Encode()
	}
	body, err := audit.SearchBundle(kept, a.opts.BaseURL, a.selfURL(r, params), next)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (a *API) auditRead(w http.ResponseWriter, r *http.Request, id string) error {
	d, err := a.auditAllowed(r, policy.Input{Interaction: policy.Read, Type: auditTrailType, ID: id})
	if err != nil {
		return err
	}
	e, err := a.opts.AuditLog.GetAuditEntry(r.Context(), id)
	if errors.Is(err, sql.ErrNoRows) {
		return fhir.NotFound(auditTrailType, id)
	}
	if err != nil {
		return err
	}
	res := &fhir.Resource{Type: auditTrailType, ID: e.ID, Body: e.Event}
	if !a.visible(r, d, res) {
		return fhir.NotFound(auditTrailType, id)
	}
	touched(r, &fhir.Resource{Type: auditTrailType, ID: e.ID})
	returned(r, 1)
	writeJSON(w, http.StatusOK, e.Event)
	return nil
}
