package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type bindPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newBindPKI(t *testing.T) *bindPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &bindPKI{ca: ca, caKey: key, pool: pool}
}

func (p *bindPKI) leaf(t *testing.T, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: []string{"localhost"}}
	tpl.IPAddresses = append(tpl.IPAddresses, []byte{127, 0, 0, 1})
	der, err := x509.CreateCertificate(rand.Reader, tpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func thumb(c tls.Certificate) string {
	sum := sha256.Sum256(c.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestCertificateBoundToken runs a real mTLS listener: the handler verifies the token and calls
// CheckBinding with the connection state, as the FHIR API does.
func TestCertificateBoundToken(t *testing.T) {
	f := newFixture(t)
	pki := newBindPKI(t)
	right, other := pki.leaf(t, 10, x509.ExtKeyUsageClientAuth), pki.leaf(t, 11, x509.ExtKeyUsageClientAuth)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := f.v.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err == nil {
			err = CheckBinding(p, r.TLS)
		}
		if err != nil {
			status, challenge := Challenge("fhirgate", err)
			w.Header().Set("WWW-Authenticate", challenge)
			w.WriteHeader(status)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pki.leaf(t, 2, x509.ExtKeyUsageServerAuth)},
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pki.pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	call := func(tok string, cert *tls.Certificate) *http.Response {
		t.Helper()
		cfg := &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		t.Cleanup(c.CloseIdleConnections)
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	bound := sign(t, f.key, with(baseClaims(), "cnf", map[string]string{"x5t#S256": thumb(right)}), nil)
	plain := sign(t, f.key, baseClaims(), nil)

	if r := call(bound, &right); r.StatusCode != http.StatusOK {
		t.Errorf("bound token with its certificate: %d", r.StatusCode)
	}
	for name, cert := range map[string]*tls.Certificate{"no certificate": nil, "another certificate": &other} {
		r := call(bound, cert)
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("bound token, %s: %d %q", name, r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
	}
	// A plain bearer token stays usable with or without a certificate.
	if r := call(plain, nil); r.StatusCode != http.StatusOK {
		t.Errorf("plain token without certificate: %d", r.StatusCode)
	}
	if r := call(plain, &other); r.StatusCode != http.StatusOK {
		t.Errorf("plain token with a certificate: %d", r.StatusCode)
	}
}

func TestCheckBindingWithoutTLS(t *testing.T) {
	p := &Principal{CertThumbprint: strings.Repeat("A", 43)}
	var e *Error
	if err := CheckBinding(p, nil); !errors.As(err, &e) || e.Code != CodeInvalidToken || e.Status != 401 {
		t.Fatalf("plain HTTP: %v", err)
	}
	if err := CheckBinding(&Principal{}, nil); err != nil {
		t.Fatalf("unbound token: %v", err)
	}
	if err := CheckBinding(nil, nil); err != nil {
		t.Fatalf("nil principal: %v", err)
	}
}

func TestUnusableCnfRefused(t *testing.T) {
	f := newFixture(t)
	for name, cnf := range map[string]any{
		"empty":      map[string]string{},
		"jkt only":   map[string]string{"jkt": "abc"},
		"short":      map[string]string{"x5t#S256": "abc"},
		"padded":     map[string]string{"x5t#S256": strings.Repeat("A", 42) + "="},
		"std base64": map[string]string{"x5t#S256": strings.Repeat("+", 43)},
	} {
		tok := sign(t, f.key, with(baseClaims(), "cnf", cnf), nil)
		_, err := f.v.Verify(context.Background(), tok)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeInvalidToken {
			t.Errorf("%s: %v", name, err)
		}
	}
	pki := newBindPKI(t)
	c := pki.leaf(t, 5, x509.ExtKeyUsageClientAuth)
	tok := sign(t, f.key, with(baseClaims(), "cnf", map[string]string{"x5t#S256": thumb(c)}), nil)
	p, err := f.v.Verify(context.Background(), tok)
	if err != nil || p.CertThumbprint != thumb(c) {
		t.Fatalf("%v %+v", err, p)
	}
}
