// Package external owns the verification of access tokens issued by an external
// authorization server (Okta, Keycloak, Entra ID, another fhirgate) that a tenant trusts:
// signed JWTs checked against the issuer's JWKS found through OIDC discovery (cached, fetched
// again on an unknown kid), or opaque tokens checked by RFC 7662 introspection (cached for the
// token's life or a configured maximum), with a claim mapping that says where the patient,
// fhirUser, scopes, roles and client are in that issuer's tokens.
package external
