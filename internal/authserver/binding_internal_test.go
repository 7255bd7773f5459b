package authserver

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/ory/fosite"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

// RFC 8705 binding at the token endpoint, grant by grant: what a connection must present and what
// the grant's session records.
func TestBindCertificate(t *testing.T) {
	certA := &x509.Certificate{Raw: []byte("certificate A")}
	certB := &x509.Certificate{Raw: []byte("certificate B")}
	thumbA := tokens.CertThumbprint(certA)
	conn := func(c *x509.Certificate) *tls.ConnectionState {
		if c == nil {
			return nil
		}
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	}
	bound := &Client{Metadata: ClientMetadata{ClientID: "bound", CertificateBoundAccessTokens: true}}
	plain := &Client{Metadata: ClientMetadata{ClientID: "plain"}}
	for _, tc := range []struct {
		name      string
		grant     string
		client    *Client
		sessThumb string
		presented *x509.Certificate
		wantErr   *fosite.RFC6749Error
		wantThumb string
	}{
		{"bound client with its certificate", oauth.GrantAuthorizationCode, bound, "", certA, nil, thumbA},
		{"bound client without a certificate", oauth.GrantClientCredentials, bound, "", nil, fosite.ErrInvalidRequest, ""},
		{"plain client stays unbound", oauth.GrantAuthorizationCode, plain, "", certA, nil, ""},
		{"bound refresh, same certificate", oauth.GrantRefreshToken, plain, thumbA, certA, nil, thumbA},
		{"bound refresh, other certificate", oauth.GrantRefreshToken, plain, thumbA, certB, fosite.ErrInvalidGrant, thumbA},
		{"bound refresh, no certificate", oauth.GrantRefreshToken, bound, thumbA, nil, fosite.ErrInvalidGrant, thumbA},
		{"unbound refresh of a bound client binds", oauth.GrantRefreshToken, bound, "", certA, nil, thumbA},
		{"bound subject token, same certificate", oauth.GrantTokenExchange, plain, thumbA, certA, nil, thumbA},
		{"bound subject token, other certificate", oauth.GrantTokenExchange, bound, thumbA, certB, fosite.ErrInvalidRequest, thumbA},
		{"bound subject token, no certificate", oauth.GrantTokenExchange, plain, thumbA, nil, fosite.ErrInvalidRequest, thumbA},
		{"unbound subject token of a bound client binds", oauth.GrantTokenExchange, bound, "", certA, nil, thumbA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "https://fhirgate.test/auth/token", nil)
			r.TLS = conn(tc.presented)
			sess := &Session{CertThumbprint: tc.sessThumb}
			err := bindCertificate(r, tc.grant, tc.client, sess)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("bindCertificate = %v, want %v", err, tc.wantErr)
			}
			if sess.CertThumbprint != tc.wantThumb {
				t.Errorf("session thumbprint = %q, want %q", sess.CertThumbprint, tc.wantThumb)
			}
		})
	}
}

// A tls_client_auth registration names its certificate exactly one way and has no secret; the
// certificate fields belong to no other method.
func TestValidateMetadataTLSClientAuth(t *testing.T) {
	base := ClientMetadata{ClientID: "lab", TokenEndpointAuthMethod: oauth.AuthTLSClient, GrantTypes: []string{oauth.GrantClientCredentials}, Scope: "system/*.rs"}
	for _, tc := range []struct {
		name   string
		edit   func(*ClientMetadata)
		secret string
		ok     bool
	}{
		{"subject DN", func(m *ClientMetadata) { m.TLSClientAuthSubjectDN = "CN=lab" }, "", true},
		{"DNS SAN", func(m *ClientMetadata) { m.TLSClientAuthSANDNS = "lab.example" }, "", true},
		{"neither", func(*ClientMetadata) {}, "", false},
		{"both", func(m *ClientMetadata) { m.TLSClientAuthSubjectDN, m.TLSClientAuthSANDNS = "CN=lab", "lab.example" }, "", false},
		{"with a secret", func(m *ClientMetadata) { m.TLSClientAuthSubjectDN = "CN=lab" }, "a-secret-of-16-chars", false},
		{"DN on a secret client", func(m *ClientMetadata) {
			m.TokenEndpointAuthMethod, m.TLSClientAuthSubjectDN = oauth.AuthClientSecretBasic, "CN=lab"
		}, "a-secret-of-16-chars", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base
			tc.edit(&m)
			if err := ValidateMetadata(m, tc.secret); (err == nil) != tc.ok {
				t.Errorf("ValidateMetadata = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
