package fhir

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error is a failure that the FHIR API reports to the client as an OperationOutcome.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the OperationOutcome issue type (invalid, not-found, conflict, ...).
	Code string
	// Severity is error unless set.
	Severity string
	// Diagnostics is the human-readable message shown to the client.
	Diagnostics string
	// Expression names the element at fault, as a FHIRPath (Patient.birthDate).
	Expression []string
	// Issues holds further issues reported alongside (several validation failures).
	Issues []Issue
	// Cause is the internal error, logged but never shown.
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Diagnostics + ": " + e.Cause.Error()
	}
	return e.Diagnostics
}

func (e *Error) Unwrap() error { return e.Cause }

// Issue is one OperationOutcome.issue.
type Issue struct {
	Severity    string   `json:"severity"`
	Code        string   `json:"code"`
	Diagnostics string   `json:"diagnostics,omitempty"`
	Expression  []string `json:"expression,omitempty"`
}

// OperationOutcome is the FHIR resource that carries errors and warnings.
type OperationOutcome struct {
	ResourceType string  `json:"resourceType"`
	ID           string  `json:"id,omitempty"`
	Issue        []Issue `json:"issue"`
}

// Errorf builds an Error with a status and issue code.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Diagnostics: fmt.Sprintf(format, args...)}
}

// Invalid is a 400 for a malformed request or resource; expression names the element, if any.
func Invalid(expression, format string, args ...any) *Error {
	e := Errorf(http.StatusBadRequest, "invalid", format, args...)
	if expression != "" {
		e.Expression = []string{expression}
	}
	return e
}

// NotFound is a 404 for a resource that never existed (or that the client may not know of).
func NotFound(typ, id string) *Error {
	return Errorf(http.StatusNotFound, "not-found", "%s/%s is not known", typ, id)
}

// Sentinel errors that backends return, wrapped with detail; OutcomeFromError maps them.
var (
	ErrNotFound        = errors.New("not found")
	ErrGone            = errors.New("deleted")
	ErrVersionConflict = errors.New("version conflict")
	ErrConflict        = errors.New("conflict")
	ErrMultipleMatches = errors.New("multiple matches")
	// ErrUnavailable means a service the request needs (the database) cannot be reached; 503.
	ErrUnavailable = errors.New("service unavailable")
)

// OutcomeFromError maps any error to a status and OperationOutcome. Errors that are not *Error
// and match no sentinel become a 500 whose text says nothing of the cause.
func OutcomeFromError(err error) (int, *OperationOutcome) {
	var fe *Error
	switch {
	case errors.As(err, &fe):
	case errors.Is(err, ErrGone):
		fe = Errorf(http.StatusGone, "deleted", "the resource was deleted")
	case errors.Is(err, ErrNotFound):
		fe = Errorf(http.StatusNotFound, "not-found", "the resource is not known")
	case errors.Is(err, ErrVersionConflict):
		fe = Errorf(http.StatusPreconditionFailed, "conflict", "the resource has changed: the version in If-Match is not the current one")
	case errors.Is(err, ErrMultipleMatches):
		fe = Errorf(http.StatusPreconditionFailed, "multiple-matches", "the conditional criteria match more than one resource")
	case errors.Is(err, ErrConflict):
		fe = Errorf(http.StatusConflict, "conflict", "the request conflicts with the current state of the resource")
	case unavailable(err):
		fe = Errorf(http.StatusServiceUnavailable, "transient", "the service is temporarily unavailable; try again")
	default:
		fe = Errorf(http.StatusInternalServerError, "exception", "internal server error")
	}
	return fe.Status, fe.Outcome()
}

// Outcome renders e as an OperationOutcome.
func (e *Error) Outcome() *OperationOutcome {
	sev := e.Severity
	if sev == "" {
		sev = "error"
	}
	oo := &OperationOutcome{ResourceType: "OperationOutcome"}
	oo.Issue = append(oo.Issue, Issue{Severity: sev, Code: e.Code, Diagnostics: e.Diagnostics, Expression: e.Expression})
	oo.Issue = append(oo.Issue, e.Issues...)
	return oo
}

// MarshalOutcome is json.Marshal for an OperationOutcome that cannot fail.
func MarshalOutcome(oo *OperationOutcome) []byte {
	b, err := json.Marshal(oo)
	if err != nil {
		return []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	return b
}
