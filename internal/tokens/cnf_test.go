package tokens_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/tokens"
)

func TestCertificateBoundClaim(t *testing.T) {
	m := minter(t)
	cert := &x509.Certificate{Raw: []byte("not really DER, hashed as is")}
	sum := sha256.Sum256(cert.Raw)
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := tokens.CertThumbprint(cert); got != want || strings.ContainsAny(got, "=+/") {
		t.Fatalf("thumbprint %q, want %q", got, want)
	}
	c := claims()
	c.Cnf = tokens.BindToConnection(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
	tok, err := m.SignAccess(c)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if !strings.Contains(string(payload), `"cnf":{"x5t#S256":"`+want+`"}`) {
		t.Fatalf("payload %s", payload)
	}
	got, err := m.VerifyAccess(tok)
	if err != nil || got.Cnf == nil || got.Cnf.X5tS256 != want {
		t.Fatalf("%v %+v", err, got.Cnf)
	}
}

func TestUnboundTokenHasNoCnf(t *testing.T) {
	if tokens.BindToConnection(nil) != nil || tokens.BindToConnection(&tls.ConnectionState{}) != nil {
		t.Fatal("no certificate must give no cnf")
	}
	if tokens.CertThumbprint(nil) != "" {
		t.Fatal("nil certificate")
	}
	m := minter(t)
	tok, err := m.SignAccess(claims())
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if strings.Contains(string(payload), "cnf") {
		t.Fatalf("unbound token carries cnf: %s", payload)
	}
}
