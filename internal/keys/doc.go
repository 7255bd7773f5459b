// Package keys owns fhirgate's signing keys and token secrets: ES256 keys for access tokens,
// RS256 keys for ID tokens and the HMAC secret of opaque tokens; their generation, encryption at
// rest, rotation with overlap and the published JWKS.
//
// Private key material is stored encrypted (AES-256-GCM) under a key-encryption key (KEK). The KEK
// comes from an environment variable when one is configured; otherwise it is a random 32-byte file
// in the data directory created with mode 0600, so the protection is then the file permissions of
// that directory (see docs/authorization-server.md).
package keys
