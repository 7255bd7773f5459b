// Package oauth owns the OAuth 2.0 vocabulary fhirgate speaks: the error codes of RFC 6749, RFC
// 7009, RFC 7662 and OpenID Connect, the *Error value handlers return, and WriteError, the one
// writer of RFC 6749 error JSON. It does no other I/O.
package oauth
