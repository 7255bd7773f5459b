package fhirapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// postBundle is POST to the base: a batch or transaction Bundle. Every entry is decided by the
// policy as if it were its own request (SMART: the server validates each inner request).
func (a *API) postBundle(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Bundles == nil {
		return fhir.Errorf(http.StatusNotImplemented, "not-supported", "batch and transaction Bundles are not enabled")
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	h, err := fhir.DecodeHeader(body)
	if err != nil {
		return err
	}
	if h.ResourceType != "Bundle" {
		return fhir.Invalid("resourceType", "POST to the base takes a Bundle, got %s", h.ResourceType)
	}
	p := *a.opts.Bundles
	p.Authorize = func(ctx context.Context, _ int, method, resourceType, id string, body []byte) error {
		return a.authorizeEntry(r.WithContext(ctx), method, resourceType, id, body)
	}
	resp, err := p.Process(r.Context(), body)
	if err != nil {
		return err
	}
	st := stateOf(r)
	if resp.Type == "batch-response" {
		st.action = audit.ActionBatch
	}
	for _, e := range resp.Entry {
		if e.Response != nil && e.Response.Location != "" {
			loc := strings.TrimPrefix(e.Response.Location, a.opts.BaseURL+"/")
			if typ, rest, ok := strings.Cut(loc, "/"); ok {
				id, _, _ := strings.Cut(rest, "/")
				touched(r, &fhir.Resource{Type: typ, ID: id, Body: e.Resource})
			}
		}
	}
	out, err := marshal(resp)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// authorizeEntry decides one Bundle entry. Reads pass the stored body to the policy so that it is
// checked before the processor returns it; searches run inside a Bundle cannot carry a narrowing,
// so they are allowed only to tokens that need none.
func (a *API) authorizeEntry(r *http.Request, method, typ, id string, body []byte) error {
	in := policy.Input{Type: typ, ID: id, Resource: body}
	if a.servesAuditTrail(typ) && method != http.MethodGet && method != http.MethodHead {
		return refuseAuditWrite()
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		if id == "" {
			in.Interaction = policy.SearchType
			in.Query = &search.Query{Types: []string{typ}}
			d, err := a.authorize(r, in)
			if err != nil {
				return err
			}
			if d.Narrowing != nil {
				return fhir.Errorf(http.StatusForbidden, "forbidden", "searches inside a Bundle are not available to a token bounded to a patient or to granular scopes; search with GET")
			}
			return nil
		}
		in.Interaction = policy.Read
		cur, err := a.opts.Backend.Read(r.Context(), typ, id)
		if err != nil && !errors.Is(err, fhir.ErrNotFound) && !errors.Is(err, fhir.ErrGone) {
			return err
		}
		if cur != nil {
			in.Resource = cur.Body
		}
		d, err := a.authorize(r, in)
		if err != nil {
			return err
		}
		if cur != nil && cur.Body != nil && !a.visible(r, d, cur) {
			return refused(d, typ, id)
		}
		return nil
	case http.MethodPost:
		in.Interaction = policy.Create
	case http.MethodPut:
		in.Interaction = policy.Update
	case http.MethodPatch:
		in.Interaction = policy.Patch
	case http.MethodDelete:
		in.Interaction = policy.Delete
	default:
		return fhir.Invalid("", "method %s is not allowed in a Bundle entry", method)
	}
	if id != "" && in.Interaction != policy.Create {
		current, err := a.currentBody(r, typ, id)
		if err != nil {
			return err
		}
		in.Current = current
	}
	_, err := a.authorize(r, in)
	return err
}
