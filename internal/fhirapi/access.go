package fhirapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// Authenticator turns the Authorization header into a verified principal (authn.Verifier).
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (*authn.Principal, error)
}

// Policy decides each request (policy.Engine).
type Policy interface {
	Evaluate(ctx context.Context, in policy.Input) (policy.Decision, error)
}

// DecisionObserver is told of every access decision, allowed or denied (the audit trail). It must
// not block.
type DecisionObserver func(r *http.Request, in policy.Input, d policy.Decision)

// requestState is what the API learns about a request as it is served: who asked, what was
// decided and what was touched, for the audit event.
type requestState struct {
	principal *authn.Principal
	action    audit.Action
	start     time.Time
	// resourceType and operation describe the interaction; reasons are the decisions' reasons.
	resourceType string
	operation    string
	reasons      []string
	// resources are the resources returned or written; patients those they concern.
	resources []string
	patients  map[string]bool
	count     int
}

type requestStateKey struct{}

func stateOf(r *http.Request) *requestState {
	if s, ok := r.Context().Value(requestStateKey{}).(*requestState); ok {
		return s
	}
	return &requestState{}
}

// PrincipalFrom returns the verified principal of a request the API has authenticated.
func PrincipalFrom(r *http.Request) *authn.Principal { return stateOf(r).principal }

// authenticate verifies the bearer token of every request except the CapabilityStatement. A
// missing or bad token is answered 401 with the RFC 6750 challenge.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	st := stateOf(r)
	if r.URL.Path == "/fhir/metadata" {
		return r, nil
	}
	if len(r.Header.Values("Authorization")) > 1 {
		return r, a.challenge(w, errors.New("several Authorization headers"))
	}
	p, err := a.opts.Authenticator.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if err != nil {
		return r, a.challenge(w, err)
	}
	// A certificate-bound token (RFC 8705) is only good on a connection with that certificate.
	if err := authn.CheckBinding(p, r.TLS); err != nil {
		return r, a.challenge(w, err)
	}
	st.principal = p
	markBreakGlass(w, p)
	// Page links are bound to who asked (not to the token, which a refresh replaces).
	binding := p.Issuer + "\x00" + p.ClientID + "\x00" + p.Subject + "\x00" + p.Patient
	return r.WithContext(context.WithValue(r.Context(), pageBindingKey{}, binding)), nil
}

func (a *API) challenge(w http.ResponseWriter, err error) error {
	status, header := authn.Challenge("fhirgate", err)
	if header != "" {
		w.Header().Set("WWW-Authenticate", header)
	}
	if status >= 500 {
		return fhir.Errorf(status, "transient", "the access token could not be checked now; try again")
	}
	code := "login"
	if status == http.StatusBadRequest {
		code = "invalid"
	}
	return fhir.Errorf(status, code, "a valid access token is required")
}

// authorize asks the policy about one interaction and turns a denial into the answer the client
// sees: 401 without a token, 404 where existence must not leak, 403 otherwise. Every decision is
// reported to the observer.
func (a *API) authorize(r *http.Request, in policy.Input) (policy.Decision, error) {
	st := stateOf(r)
	in.Principal = st.principal
	d, err := a.opts.Policy.Evaluate(r.Context(), in)
	if err != nil {
		d = policy.Decision{Reasons: []policy.Reason{policy.ReasonEvaluationError}}
	}
	st.noteDecision(in, d)
	if a.opts.Observe != nil {
		a.opts.Observe(r, in, d)
	}
	if err != nil {
		return d, &fhir.Error{Status: http.StatusInternalServerError, Code: "exception", Diagnostics: "the access decision failed", Cause: err}
	}
	if d.Allow {
		return d, nil
	}
	return d, denial(d, in)
}

// denial is the error a client sees for a refused decision. The reason codes go to the audit
// trail; the client learns no more than the status says.
func denial(d policy.Decision, in policy.Input) error {
	switch d.Status() {
	case http.StatusUnauthorized:
		return fhir.Errorf(http.StatusUnauthorized, "login", "a valid access token is required")
	case http.StatusNotFound:
		if in.ID != "" {
			return fhir.NotFound(in.Type, in.ID)
		}
		return fhir.Errorf(http.StatusNotFound, "not-found", "not found")
	}
	reason := ""
	if len(d.Reasons) > 0 {
		reason = string(d.Reasons[0])
	}
	return &fhir.Error{Status: http.StatusForbidden, Code: "forbidden", Diagnostics: "the access token does not allow this request (" + reason + ")"}
}

// visible reports whether the decision's filter lets res out, and redacts res.Body in place when
// the filter releases it only redacted (policy.labels.redact). It is the last check before a
// resource leaves the server; the narrowed query should never have produced one that fails it.
func (a *API) visible(r *http.Request, d policy.Decision, res *fhir.Resource) bool {
	out, redacted, why := d.Filter.Release(res.Type, res.Body)
	if why != "" {
		if !quietRefusal(why) {
			a.opts.Logger.WarnContext(r.Context(), "response filter held back a resource", "type", res.Type, "id", res.ID, "reason", why)
		}
		return false
	}
	if redacted {
		res.Body = out
		st := stateOf(r)
		if !slices.Contains(st.reasons, string(policy.ReasonRedacted)) {
			st.reasons = append(st.reasons, string(policy.ReasonRedacted))
		}
	}
	return true
}

// visibleWhole is visible for a resource the caller is about to act on, not only read: one it
// sees only redacted is refused (403), as the policy refuses updating it.
func (a *API) visibleWhole(r *http.Request, d policy.Decision, res *fhir.Resource) error {
	_, redacted, why := d.Filter.Release(res.Type, res.Body)
	switch {
	case why != "":
		return refused(d, res.Type, res.ID)
	case redacted:
		return fhir.Errorf(http.StatusForbidden, "forbidden", "the access token sees %s/%s only redacted", res.Type, res.ID)
	}
	return nil
}

// refused is the answer for a resource the decision's filter held back: 404 so that its existence
// does not leak, or 403 where the deployment chose to reveal refusals.
func refused(d policy.Decision, typ, id string) error {
	if d.RefusedStatus() == http.StatusForbidden {
		return fhir.Errorf(http.StatusForbidden, "forbidden", "the access token does not allow this request")
	}
	return fhir.NotFound(typ, id)
}
