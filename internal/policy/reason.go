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
	// ReasonEvaluationError: a body could not be checked (fail closed).
	ReasonEvaluationError Reason = "evaluation-error"
)
