package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Error codes (RFC 6749 sections 4.1.2.1 and 5.2; OpenID Connect Core 3.1.2.6).
const (
	InvalidRequest          = "invalid_request"
	InvalidClient           = "invalid_client"
	InvalidGrant            = "invalid_grant"
	UnauthorizedClient      = "unauthorized_client"
	UnsupportedGrantType    = "unsupported_grant_type"
	UnsupportedResponseType = "unsupported_response_type"
	InvalidScope            = "invalid_scope"
	AccessDenied            = "access_denied"
	ServerError             = "server_error"
	TemporarilyUnavailable  = "temporarily_unavailable"
	UnsupportedTokenType    = "unsupported_token_type" // RFC 7009
	InvalidToken            = "invalid_token"          // RFC 6750
	LoginRequired           = "login_required"
	InvalidClientMetadata   = "invalid_client_metadata" // RFC 7591
	InvalidRedirectURI      = "invalid_redirect_uri"    // RFC 7591
	InvalidTarget           = "invalid_target"          // RFC 8693
)

// Grant and response types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	ResponseTypeCode       = "code"
	// ClientAssertionJWTBearer is the client_assertion_type of private_key_jwt (RFC 7523).
	ClientAssertionJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// GrantTokenExchange is RFC 8693 token exchange; fhirgate uses it for break-glass only.
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken is the RFC 8693 section 3 token type URI of an access token.
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// Token endpoint authentication methods.
const (
	AuthNone              = "none"
	AuthClientSecretBasic = "client_secret_basic"
	AuthClientSecretPost  = "client_secret_post"
	AuthPrivateKeyJWT     = "private_key_jwt"
	// AuthTLSClient is RFC 8705 section 2.1 PKI mutual-TLS client authentication: the client
	// presents a certificate chaining to a trusted CA whose subject matches its registration.
	AuthTLSClient = "tls_client_auth"
)

// Error is an OAuth error response. Description is public: it never carries internal detail.
type Error struct {
	Code        string
	Description string
	// Status is the HTTP status; 400 when zero.
	Status int
	// Cause is the internal error, for logs only.
	Cause error
}

func (e *Error) Error() string {
	if e.Description != "" {
		return e.Code + ": " + e.Description
	}
	return e.Code
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// StatusCode is the HTTP status of e.
func (e *Error) StatusCode() int {
	if e.Status != 0 {
		return e.Status
	}
	if e.Code == InvalidClient {
		return http.StatusUnauthorized
	}
	if e.Code == ServerError {
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// New returns an error with code and description.
func New(code, description string) *Error { return &Error{Code: code, Description: description} }

// ErrorFrom returns err as an *Error; anything else becomes a server_error whose cause is err.
func ErrorFrom(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: ServerError, Description: "internal error", Status: http.StatusInternalServerError, Cause: err}
}

// NoStore sets the headers every token-bearing or error response carries (RFC 6749 5.1).
func NoStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// WriteError writes err as RFC 6749 section 5.2 JSON with Cache-Control: no-store. An
// invalid_client answer to a request that used HTTP Basic carries WWW-Authenticate (RFC 6749 5.2).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := ErrorFrom(err)
	NoStore(w)
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	status := e.StatusCode()
	if status == http.StatusUnauthorized && r != nil {
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="fhirgate", error="`+e.Code+`"`)
		}
	}
	w.WriteHeader(status)
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description}
	_ = json.NewEncoder(w).Encode(body)
}

// WriteJSON writes v as JSON with status and the no-store headers.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	NoStore(w)
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
