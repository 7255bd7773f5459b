package fhirapi

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// AuditLog reads the audit trail: AuditEvents are served from it, not from the resource store.
type AuditLog interface {
	ListAuditEntries(ctx context.Context, f sqlstore.AuditFilter) ([]sqlstore.AuditEntry, error)
	GetAuditEntry(ctx context.Context, id string) (sqlstore.AuditEntry, error)
}

// auditTrailType is served from the audit trail when one is configured.
const auditTrailType = "AuditEvent"

// DefaultAuditorRole is the user role (the access token's roles claim) that may read and search
// the audit trail (config audit.auditor_role).
const DefaultAuditorRole = "auditor"

// reasonNotAuditor is the reason recorded when a token that may reach AuditEvent lacks the
// auditor role.
const reasonNotAuditor = "auditor-role-missing"

// accessLogOperation is the patient's accounting of disclosures: GET Patient/{id}/$access-log.
const accessLogOperation = "$access-log"

func (a *API) servesAuditTrail(typ string) bool {
	return typ == auditTrailType && a.opts.AuditLog != nil
}

// auditorRole is the role required to read the trail.
func (a *API) auditorRole() string { return a.opts.AuditorRole }

// refuseAuditWrite keeps the trail append-only: only the server writes AuditEvents.
func refuseAuditWrite() error {
	return fhir.Errorf(http.StatusMethodNotAllowed, "not-supported", "AuditEvents are written by the server only")
}

// auditAllowed decides access to the trail: the token's scopes must reach AuditEvent, only
// without a narrowing (the trail cannot be bounded to a patient or a granular scope), and the
// user must hold the auditor role.
func (a *API) auditAllowed(r *http.Request, in policy.Input) (policy.Decision, error) {
	d, err := a.authorize(r, in)
	if err != nil {
		return d, err
	}
	if d.Narrowing != nil && !d.Narrowing.LabelsOnly() {
		return d, fhir.Errorf(http.StatusForbidden, "forbidden", "the audit trail is not available to a token bounded to a patient or to granular scopes")
	}
	st := stateOf(r)
	if p := st.principal; p == nil || !slices.Contains(p.Roles, a.auditorRole()) {
		if !slices.Contains(st.reasons, reasonNotAuditor) {
			st.reasons = append(st.reasons, reasonNotAuditor)
		}
		return d, fhir.Errorf(http.StatusForbidden, "forbidden", "the audit trail is available to auditors only")
	}
	return d, nil
}

func (a *API) auditSearch(w http.ResponseWriter, r *http.Request, params url.Values) error {
	q := &search.Query{Types: []string{auditTrailType}}
	d, err := a.auditAllowed(r, policy.Input{Interaction: policy.SearchType, Type: auditTrailType, Query: q})
	if err != nil {
		return err
	}
	s, err := audit.ParseSearch(params)
	if err != nil {
		return fhir.Invalid("", "%v", err)
	}
	if s.Filter.Limit == 0 {
		s.Filter.Limit = a.opts.DefaultCount
	}
	kept, cursor, err := s.Page(r.Context(), a.opts.AuditLog.ListAuditEntries, func(e sqlstore.AuditEntry) bool {
		return a.visible(r, d, &fhir.Resource{Type: auditTrailType, ID: e.ID, Body: e.Event})
	})
	if err != nil {
		return err
	}
	for _, e := range kept {
		touched(r, &fhir.Resource{Type: auditTrailType, ID: e.ID})
	}
	returned(r, len(kept))
	next := ""
	if cursor > 0 {
		p := cloneValues(params)
		p.Set("_cursor", strconv.FormatInt(cursor, 10))
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

// accessLog is GET Patient/{id}/$access-log: the accounting of disclosures of a patient's record,
// for the patient. The token must be a patient token for that patient (launch context patient =
// id, patient-level resource scopes only, no practitioner signed in) whose policy allows reading
// Patient/{id}. The answer is a
// searchset Bundle of the trail entries concerning the patient, newest first, each reduced to
// audit.DisclosureView. Parameters: date, _sort, _count, _cursor.
func (a *API) accessLog(w http.ResponseWriter, r *http.Request, patientID string) error {
	st := stateOf(r)
	st.action, st.operation, st.resourceType = audit.ActionOperation, strings.TrimPrefix(accessLogOperation, "$"), "Patient"
	st.addPatient(patientID)
	if a.opts.AuditLog == nil {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "this server keeps no audit trail")
	}
	d, err := a.authorize(r, policy.Input{Interaction: policy.Read, Type: "Patient", ID: patientID})
	if err != nil {
		return err
	}
	p := st.principal
	if p == nil || p.Patient != patientID || !ownRecordUser(p.FHIRUser, patientID) ||
		!p.Scopes.HasContext(smart.ContextPatient) || p.Scopes.HasContext(smart.ContextUser) || p.Scopes.HasContext(smart.ContextSystem) {
		return fhir.Errorf(http.StatusForbidden, "forbidden", "the access log is available to the patient only, under a token for their own record")
	}
	patient, err := a.opts.Backend.Read(r.Context(), "Patient", patientID)
	if err != nil {
		return err
	}
	if !a.visible(r, d, patient) {
		return fhir.NotFound("Patient", patientID)
	}
	params := r.URL.Query()
	for name := range params {
		switch name {
		case "date", "_sort", "_count", "_cursor":
		default:
			return fhir.Invalid("", "%s does not take the parameter %q (date, _sort, _count and _cursor only)", accessLogOperation, name)
		}
	}
	f, err := audit.FilterFromQuery(params)
	if err != nil {
		return fhir.Invalid("", "%v", err)
	}
	f.Patient = patientID
	if f.Limit == 0 {
		f.Limit = a.opts.DefaultCount
	}
	entries, cursor, err := audit.Search{Filter: f}.Page(r.Context(), a.opts.AuditLog.ListAuditEntries, nil)
	if err != nil {
		return err
	}
	views, err := audit.DisclosureEntries(entries, patientID)
	if err != nil {
		return err
	}
	returned(r, len(views))
	self := a.opts.BaseURL + "/Patient/" + patientID + "/" + accessLogOperation
	next := ""
	if cursor > 0 {
		q := cloneValues(params)
		q.Set("_cursor", strconv.FormatInt(cursor, 10))
		next = self + "?" + q.Encode()
	}
	if len(params) > 0 {
		self += "?" + params.Encode()
	}
	body, err := audit.SearchBundle(views, a.opts.BaseURL, self, next)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// ownRecordUser reports whether the signed-in user may see the patient's access log as the
// patient: the patient themselves, a related person acting for them, or no user resource (a
// patient app whose token carries only the patient context). A practitioner with the patient in
// context is not the patient.
func ownRecordUser(fhirUser, patientID string) bool {
	typ, id, _ := strings.Cut(fhirUser, "/")
	switch typ {
	case "":
		return true
	case "Patient":
		return id == patientID
	case "RelatedPerson":
		return true
	}
	return false
}
