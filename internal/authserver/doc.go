// Package authserver owns fhirgate's SMART on FHIR authorization server: the HTTP surface of
// OAuth 2.0 and OpenID Connect (authorize with login, patient picker and consent pages, token,
// introspection, revocation, userinfo, dynamic registration, JWKS and the two discovery
// documents), the EHR launcher, client and user registries, and the EHR launch contexts.
//
// The protocol core is github.com/ory/fosite behind fhirgate's own storage (sqlstore), token
// strategies (package tokens), client authentication and SMART checks; docs/adr/0001-fosite.md
// records why and how to leave it.
package authserver
