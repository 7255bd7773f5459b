package authn

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
)

// CheckBinding enforces RFC 8705 section 3 for a verified principal: a certificate-bound token
// (p.CertThumbprint set) is accepted only on a TLS connection whose client certificate (the
// leaf) has that SHA-256 thumbprint. No TLS, no client certificate or another certificate is
// invalid_token (401). A token without cnf is a plain bearer token and passes.
//
// Call it after Verify with r.TLS. Behind a TLS-terminating proxy the certificate is not on
// this connection, so bound tokens are refused: terminate mTLS at fhirgate.
func CheckBinding(p *Principal, state *tls.ConnectionState) error {
	if p == nil || p.CertThumbprint == "" {
		return nil
	}
	if state == nil || len(state.PeerCertificates) == 0 {
		return invalidToken("the access token is bound to a client certificate and none was presented", nil)
	}
	sum := sha256.Sum256(state.PeerCertificates[0].Raw)
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(p.CertThumbprint)) != 1 {
		return invalidToken("the access token is bound to another client certificate", nil)
	}
	return nil
}

// validThumbprint reports whether s is an unpadded base64url SHA-256 digest (43 characters).
func validThumbprint(s string) bool {
	if len(s) != 43 {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
