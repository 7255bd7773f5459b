package audit

import (
	"context"
	"time"
)

// Recorder records one audit event. Trail implements it; callers depend on this interface.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// Action is what happened. FHIR interactions use the R4 restful-interaction codes
// (http://hl7.org/fhir/restful-interaction); security events use fhirgate codes.
type Action string

// FHIR RESTful interactions.
const (
	ActionRead            Action = "read"
	ActionVRead           Action = "vread"
	ActionUpdate          Action = "update"
	ActionPatch           Action = "patch"
	ActionDelete          Action = "delete"
	ActionHistoryInstance Action = "history-instance"
	ActionHistoryType     Action = "history-type"
	ActionHistorySystem   Action = "history-system"
	ActionCreate          Action = "create"
	ActionSearchType      Action = "search-type"
	ActionSearchSystem    Action = "search-system"
	ActionCapabilities    Action = "capabilities"
	ActionTransaction     Action = "transaction"
	ActionBatch           Action = "batch"
	ActionOperation       Action = "operation"
)

// Security events.
const (
	ActionLogin             Action = "login"
	ActionLogout            Action = "logout"
	ActionConsentGiven      Action = "consent-given"
	ActionConsentWithheld   Action = "consent-withheld"
	ActionTokenIssued       Action = "token-issued"
	ActionTokenRefreshed    Action = "token-refreshed"
	ActionTokenRevoked      Action = "token-revoked"
	ActionTokenIntrospected Action = "token-introspected"
	ActionClientRegistered  Action = "client-registered"
	ActionKeyRotated        Action = "key-rotated"
	ActionBreakGlass        Action = "break-glass"
	// ActionBreakGlassReviewed: a privacy officer closed a break-glass review item.
	ActionBreakGlassReviewed Action = "break-glass-reviewed"
	// ActionAlert is an alert raised by a detector.
	ActionAlert Action = "alert"
)

// IsREST reports whether a is a FHIR RESTful interaction.
func (a Action) IsREST() bool {
	_, ok := restActions[a]
	return ok
}

// Valid reports whether a is one of the defined actions.
func (a Action) Valid() bool {
	if a.IsREST() {
		return true
	}
	_, ok := securityActions[a]
	return ok
}

// Outcome is how the request ended.
type Outcome string

// The outcomes.
const (
	// OutcomeSuccess: the request was allowed and served.
	OutcomeSuccess Outcome = "success"
	// OutcomeDenied: authentication or authorization refused the request (401, 403, a failed
	// login, a refused token request).
	OutcomeDenied Outcome = "denied"
	// OutcomeFailure: the request was allowed but failed on the client's account (400, 404,
	// 409, 412, 422, ...).
	OutcomeFailure Outcome = "failure"
	// OutcomeError: the server failed (5xx).
	OutcomeError Outcome = "error"
)

// Valid reports whether o is one of the defined outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeSuccess, OutcomeDenied, OutcomeFailure, OutcomeError:
		return true
	}
	return false
}

// OutcomeFromStatus maps an HTTP status to an Outcome.
func OutcomeFromStatus(status int) Outcome {
	switch {
	case status == 401 || status == 403:
		return OutcomeDenied
	case status >= 500:
		return OutcomeError
	case status >= 400:
		return OutcomeFailure
	default:
		return OutcomeSuccess
	}
}

// Event is what a caller knows about one request: one Event per request, listing every resource it
// touched (never one event per resource). It has no field for resource bodies, tokens or secrets
// on purpose.
type Event struct {
	// Time is when the request was received; the trail's clock when zero.
	Time time.Time
	// Action is what was attempted. Required.
	Action Action
	// Outcome is how it ended; derived from Status when empty.
	Outcome Outcome
	// Status is the HTTP status of the response, 0 when there was none.
	Status int
	// Reasons are the reason codes of the policy decision or of the failure (policy reasons,
	// OAuth error codes), e.g. "scope-missing", "invalid_grant".
	Reasons []string
	// Detail is a short human description of the outcome. Never put request data here.
	Detail string

	// ClientID is the OAuth client.
	ClientID string
	// Subject is the authenticated user (local username or the token's sub).
	Subject string
	// FHIRUser is the user's FHIR resource, e.g. "Practitioner/123".
	FHIRUser string
	// Roles are the user's or client's roles.
	Roles []string
	// SourceIP is the client's network address.
	SourceIP string
	// UserAgent is the request's User-Agent header.
	UserAgent string
	// TokenID identifies the access token (its jti), never the token itself.
	TokenID string

	// ResourceType is the type the interaction is on (the type of a search, the type read).
	ResourceType string
	// Resources lists every resource the request touched or returned, as "Type/id" or
	// "Type/id/_history/v".
	Resources []string
	// Operation is the name of an operation without '$' (ActionOperation), e.g. "export".
	Operation string
	// Query is the search or operation query with its values, as a URL query string. Parameters
	// that carry credentials are removed before recording.
	Query string
	// Patients are the ids of the patients the request concerns (the compartment, the launch
	// patient, the patients of the returned resources).
	Patients []string
	// Count is the number of resources returned; -1 when not applicable.
	Count int

	// PurposeOfUse are v3 ActReason codes (TREAT, ETREAT, HPAYMT, ...).
	PurposeOfUse []string
	// BreakGlass marks access under emergency override.
	BreakGlass bool
	// RequestID is the request's X-Request-Id.
	RequestID string
	// Tenant is the tenant the request belongs to, if any.
	Tenant string
}

var restActions = map[Action]restInfo{
	ActionRead:            {"R", "Read"},
	ActionVRead:           {"R", "vread"},
	ActionUpdate:          {"U", "Update"},
	ActionPatch:           {"U", "Patch"},
	ActionDelete:          {"D", "Delete"},
	ActionHistoryInstance: {"R", "history-instance"},
	ActionHistoryType:     {"R", "history-type"},
	ActionHistorySystem:   {"R", "history-system"},
	ActionCreate:          {"C", "Create"},
	ActionSearchType:      {"E", "search-type"},
	ActionSearchSystem:    {"E", "search-system"},
	ActionCapabilities:    {"R", "capabilities"},
	ActionTransaction:     {"E", "transaction"},
	ActionBatch:           {"E", "batch"},
	ActionOperation:       {"E", "operation"},
}

type restInfo struct {
	action  string // AuditEvent.action: C R U D E
	display string
}

// securityActions maps each security action to its AuditEvent type and subtype.
var securityActions = map[Action]securityInfo{
	ActionLogin:              {dcm("110114", "User Authentication"), dcm("110122", "Login"), "E"},
	ActionLogout:             {dcm("110114", "User Authentication"), dcm("110123", "Logout"), "E"},
	ActionConsentGiven:       {dcm("110113", "Security Alert"), dcm("110137", "User Security Attributes Changed"), "E"},
	ActionConsentWithheld:    {dcm("110113", "Security Alert"), dcm("110137", "User Security Attributes Changed"), "E"},
	ActionTokenIssued:        {dcm("110114", "User Authentication"), iheEvent("ITI-71", "Get Access Token"), "E"},
	ActionTokenRefreshed:     {dcm("110114", "User Authentication"), iheEvent("ITI-71", "Get Access Token"), "E"},
	ActionTokenRevoked:       {dcm("110113", "Security Alert"), dcm("110137", "User Security Attributes Changed"), "D"},
	ActionTokenIntrospected:  {dcm("110114", "User Authentication"), iheEvent("ITI-102", "Introspect Token"), "E"},
	ActionClientRegistered:   {dcm("110113", "Security Alert"), dcm("110129", "Security Configuration"), "C"},
	ActionKeyRotated:         {dcm("110113", "Security Alert"), dcm("110129", "Security Configuration"), "U"},
	ActionBreakGlass:         {dcm("110113", "Security Alert"), dcm("110127", "Emergency Override Started"), "E"},
	ActionBreakGlassReviewed: {dcm("110113", "Security Alert"), dcm("110138", "Emergency Override Stopped"), "E"},
	ActionAlert:              {dcm("110113", "Security Alert"), dcm("110132", "Use of Restricted Function"), "E"},
}

type securityInfo struct {
	typ, subtype coding
	action       string
}
