// Package authn owns bearer-token authentication on the FHIR side: it turns the Authorization
// header of a request into a verified Principal (who, for which client, with which scopes and
// launch context), or into an error that says how to answer (RFC 6750 WWW-Authenticate challenge
// and status).
//
// Access tokens are JWTs minted by fhirgate's authorization server (RFC 9068 profile, typ
// at+jwt) and are verified offline: signature with an allow-listed algorithm and a key chosen by
// kid from a KeySource (cached, refreshed on rotation), exact issuer, exactly one audience equal
// to this FHIR base URL, expiry and not-before with a small clock skew, and a revocation check.
// Anything unexpected fails closed.
//
// The package imports no HTTP code: callers pass the header value in and write the status and
// challenge that Challenge returns.
package authn
