package policy

// Reason is an enumerated explanation of a decision. Reasons go to the audit log and decide the
// HTTP answer (401, 403 or 404); their text is stable.
type Reason string

// Reasons for allowing.
const (
	// ReasonPublic: the interaction needs no token (the CapabilityStatement).
	ReasonPublic Reason = "public"
	// ReasonScopeGranted: a scope of the token grants the interaction.
	ReasonScopeGranted Reason = "scope-granted"
	// ReasonCompartmentNarrowed: the search or read is bounded to the patient compartment.
	ReasonCompartmentNarrowed Reason = "compartment-narrowed"
	// ReasonGranularNarrowed: the search is bounded by granular scope constraints.
	ReasonGranularNarrowed Reason = "granular-narrowed"
	// ReasonUserAccessNarrowed: the user/ scopes are bounded by the user's own permissions
	// (policy.user_access compartment or care-team).
	ReasonUserAccessNarrowed Reason = "user-access-narrowed"
	// ReasonLabelsNarrowed: the search is bounded to the resources whose security labels the
	// token's clearance covers.
	ReasonLabelsNarrowed Reason = "labels-narrowed"
	// ReasonConsentNarrowed: the search is bounded by the patient's Consent.
	ReasonConsentNarrowed Reason = "consent-narrowed"
	// ReasonBreakGlass: an emergency-access token; label and Consent restrictions are lifted.
	ReasonBreakGlass Reason = "break-glass"
)

// Reasons for denying.
const (
	// ReasonNoToken: no authenticated principal (answer 401).
	ReasonNoToken Reason = "no-token"
	// ReasonScopeMissingType: no scope of the token names the resource type (or "*").
	ReasonScopeMissingType Reason = "scope-missing-type"
	// ReasonScopeMissingInteraction: scopes name the type but not the permission the
	// interaction needs (c, r, u, d or s).
	ReasonScopeMissingInteraction Reason = "scope-missing-interaction"
	// ReasonPatientContextMissing: the token has patient/ scopes but no patient claim; the
	// whole token is refused (fail closed).
	ReasonPatientContextMissing Reason = "patient-context-missing"
	// ReasonFHIRUserMissing: the token has user/ scopes but no fhirUser claim; the whole token
	// is refused.
	ReasonFHIRUserMissing Reason = "fhiruser-missing"
	// ReasonFHIRUserUnsupported: user/ scopes for a user whose fhirUser type the engine does
	// not model (RelatedPerson, Person); the whole token is refused.
	ReasonFHIRUserUnsupported Reason = "fhiruser-unsupported"
	// ReasonMixedContext: system/ scopes together with patient/ or user/ scopes.
	ReasonMixedContext Reason = "mixed-context"
	// ReasonOutsideCompartment: the resource (or the compartment asked for) is not the token's
	// patient's. Reads answer 404, not 403, so that existence does not leak.
	ReasonOutsideCompartment Reason = "outside-compartment"
	// ReasonTypeOutsidePatientContext: a patient/ scope on a type that is neither in the
	// Patient compartment nor a shared type (Practitioner, Organization, ...).
	ReasonTypeOutsidePatientContext Reason = "type-outside-patient-context"
	// ReasonGranularMismatch: the resource does not satisfy the constraints of any granular
	// scope that would permit it. Reads answer 404.
	ReasonGranularMismatch Reason = "granular-mismatch"
	// ReasonGranularUnsupported: granular scopes that cannot be compiled into the search (an
	// unknown parameter, or alternatives the query model cannot express).
	ReasonGranularUnsupported Reason = "granular-unsupported"
	// ReasonChainNotPermitted: a chained or reverse-chained (_has) parameter reaches resources
	// the token may not search.
	ReasonChainNotPermitted Reason = "chain-not-permitted"
	// ReasonQueryUnsupported: a search shape the engine cannot bound safely (e.g. a system
	// search over every type with a patient token).
	ReasonQueryUnsupported Reason = "query-unsupported"
	// ReasonOperationNotAllowed: an operation ($name) that the engine does not model.
	ReasonOperationNotAllowed Reason = "operation-not-allowed"
	// ReasonInteractionUnknown: an interaction the engine does not know.
	ReasonInteractionUnknown Reason = "interaction-unknown"
	// ReasonInvalidInput: the input is inconsistent (a body of another type, a missing id).
	ReasonInvalidInput Reason = "invalid-input"
	// ReasonEvaluationError: a body or the user's permissions could not be checked (fail
	// closed).
	ReasonEvaluationError Reason = "evaluation-error"
	// ReasonOutsideUserAccess: the resource is outside the user's own reach (not in the
	// Practitioner compartment of the user, or not a patient of the user's care teams). Reads
	// answer 404 (unless policy.hide_existence is false).
	ReasonOutsideUserAccess Reason = "outside-user-access"
	// ReasonTypeOutsideUserAccess: a user/ scope on a type the user access strategy cannot
	// bound (outside the Patient or Practitioner compartment and not a shared type).
	ReasonTypeOutsideUserAccess Reason = "type-outside-user-access"
	// ReasonUserAccessTooBroad: the user reaches more patients than policy.max_user_patients;
	// the request is refused rather than run with an unbounded OR clause.
	ReasonUserAccessTooBroad Reason = "user-access-too-broad"
	// ReasonLabelAboveClearance: the resource carries a security label the token's clearance
	// does not cover. Reads answer 404 (unless policy.hide_existence is false).
	ReasonLabelAboveClearance Reason = "label-above-clearance"
	// ReasonConsentDenied: the patient's Consent denies this access. Reads answer 404 (unless
	// policy.hide_existence is false).
	ReasonConsentDenied Reason = "consent-denied"
	// ReasonRedacted: the token sees the resource only redacted (a label above its clearance
	// that policy.labels.redact redacts), so it may not change it nor write one like it: the
	// write would be made blind, or lose what it cannot see. Answered 403.
	ReasonRedacted Reason = "redacted"
)

// denyRules name the rule behind each denial (Decision.Rule); a decision may override it with a
// more precise one (the granular scopes, user_access=<strategy>).
var denyRules = map[Reason]string{
	ReasonNoToken:                   "token-required",
	ReasonScopeMissingType:          "deny-by-default: no scope names the type",
	ReasonScopeMissingInteraction:   "deny-by-default: no scope grants the interaction",
	ReasonPatientContextMissing:     "patient-scopes-need-patient",
	ReasonFHIRUserMissing:           "user-scopes-need-fhiruser",
	ReasonFHIRUserUnsupported:       "user-scopes-fhiruser-type",
	ReasonMixedContext:              "no-mixed-contexts",
	ReasonOutsideCompartment:        "patient-compartment",
	ReasonTypeOutsidePatientContext: "patient-context-types",
	ReasonGranularMismatch:          "granular-scopes",
	ReasonGranularUnsupported:       "granular-scopes-expressible",
	ReasonChainNotPermitted:         "chains-unbounded-only",
	ReasonQueryUnsupported:          "query-shape",
	ReasonOperationNotAllowed:       "operation-allow-list",
	ReasonInteractionUnknown:        "interaction-allow-list",
	ReasonInvalidInput:              "input-consistency",
	ReasonEvaluationError:           "fail-closed",
	ReasonOutsideUserAccess:         "user-access",
	ReasonTypeOutsideUserAccess:     "user-access-types",
	ReasonUserAccessTooBroad:        "user-access-cap",
	ReasonLabelAboveClearance:       "clearance",
	ReasonConsentDenied:             "consent",
	ReasonRedacted:                  "clearance-redacted",
}
