package fhirapi

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// HeaderBreakGlass is set on every response to an emergency-access token, with the review item
// it is recorded under (docs/access-control.md §3.11).
const HeaderBreakGlass = "Fhirgate-Break-Glass"

// markBreakGlass shows emergency access in the response headers.
func markBreakGlass(w http.ResponseWriter, p *authn.Principal) {
	if p != nil && p.IsBreakGlass() {
		w.Header().Set(HeaderBreakGlass, "active; review="+p.BreakGlass.Review)
	}
}

// breakGlassIssues is the OperationOutcome warning a Bundle answered under emergency access
// carries: the caller sees data that Consent or labels would otherwise hide, and the access is
// reviewed.
func breakGlassIssues(p *authn.Principal) []fhir.Issue {
	if p == nil || !p.IsBreakGlass() {
		return nil
	}
	return []fhir.Issue{{Severity: "warning", Code: "suppressed",
		Diagnostics: "emergency access (break-glass): Consent denials and security labels are overridden; this access is audited and reviewed (item " + p.BreakGlass.Review + ")"}}
}

// appendBreakGlassOutcome adds the break-glass warning to a Bundle as an outcome entry.
func appendBreakGlassOutcome(b *fhir.Bundle, p *authn.Principal) {
	if is := breakGlassIssues(p); is != nil {
		oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: is}
		b.Entry = append(b.Entry, fhir.BundleEntry{Resource: fhir.MarshalOutcome(oo), Search: &fhir.EntrySearch{Mode: "outcome"}})
	}
}

// quietRefusal reports whether a resource held back by the filter is an expected outcome (an
// _include of another patient's resource, a labelled or Consent-denied one) rather than a sign
// that the narrowed query let through what it should not have.
func quietRefusal(why policy.Reason) bool {
	switch why {
	case policy.ReasonGranularMismatch, policy.ReasonOutsideCompartment, policy.ReasonOutsideUserAccess,
		policy.ReasonLabelAboveClearance, policy.ReasonConsentDenied:
		return true
	}
	return false
}
