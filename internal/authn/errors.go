package authn

import (
	"errors"
	"strings"
)

// Error codes of RFC 6750 section 3.1.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidToken   = "invalid_token"
)

// HTTP statuses used by this package (kept as numbers so the package needs no HTTP import).
const (
	statusBadRequest         = 400
	statusUnauthorized       = 401
	statusServiceUnavailable = 503
)

// ErrNoToken means the request carries no bearer token (no Authorization header, or another
// scheme). RFC 6750 section 3.1: the challenge then has no error code.
var ErrNoToken = errors.New("authn: no bearer token")

// Error is an authentication failure. Description is safe to show to the client; Cause is for
// the log only.
type Error struct {
	// Code is invalid_token or invalid_request; empty when the failure is not the client's
	// (a key source or revocation store that cannot answer).
	Code string
	// Description is a short public explanation.
	Description string
	// Status is the HTTP status to answer with: 401, 400 or 503.
	Status int
	// Cause is the internal error, if any.
	Cause error
}

func (e *Error) Error() string {
	msg := "authn: " + e.Description
	if e.Code != "" {
		msg = "authn: " + e.Code + ": " + e.Description
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

func invalidToken(desc string, cause error) *Error {
	return &Error{Code: CodeInvalidToken, Description: desc, Status: statusUnauthorized, Cause: cause}
}

func invalidRequest(desc string) *Error {
	return &Error{Code: CodeInvalidRequest, Description: desc, Status: statusBadRequest}
}

func unavailable(desc string, cause error) *Error {
	return &Error{Description: desc, Status: statusServiceUnavailable, Cause: cause}
}

// Challenge says how to answer an authentication failure: the HTTP status and the value of the
// WWW-Authenticate header (empty when none is due, as for a 503). realm names the protected
// resource (RFC 6750 section 3); it and the description are sanitised to the characters the
// RFC allows inside the quoted strings.
//
//	no token:       401, Bearer realm="fhirgate"
//	invalid token:  401, Bearer realm="fhirgate", error="invalid_token", error_description="..."
//	bad header:     400, Bearer realm="fhirgate", error="invalid_request", error_description="..."
//	store failure:  503, no challenge
//
// Any other error is treated as an invalid token (fail closed).
func Challenge(realm string, err error) (status int, wwwAuthenticate string) {
	var b strings.Builder
	b.WriteString("Bearer")
	if realm != "" {
		b.WriteString(` realm="`)
		b.WriteString(quoteSafe(realm))
		b.WriteByte('"')
	}
	sep := func() {
		if b.Len() > len("Bearer") {
			b.WriteByte(',')
		}
		b.WriteByte(' ')
	}
	if errors.Is(err, ErrNoToken) || err == nil {
		return statusUnauthorized, b.String()
	}
	var ae *Error
	if !errors.As(err, &ae) {
		ae = invalidToken("the access token is not valid", err)
	}
	if ae.Code == "" {
		return ae.Status, ""
	}
	sep()
	b.WriteString(`error="`)
	b.WriteString(ae.Code)
	b.WriteByte('"')
	if ae.Description != "" {
		sep()
		b.WriteString(`error_description="`)
		b.WriteString(quoteSafe(ae.Description))
		b.WriteByte('"')
	}
	return ae.Status, b.String()
}

// quoteSafe keeps the characters RFC 6750 allows in error_description (%x20-21 / %x23-5B /
// %x5D-7E) and drops the rest.
func quoteSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
