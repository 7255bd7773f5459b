// Package tokens owns the JWTs fhirgate mints and checks: ES256 access tokens (typ at+jwt) that
// the FHIR side verifies offline, and RS256 OpenID Connect ID tokens. Keys come from package keys;
// the claims layout is the contract with internal/authn.
package tokens
