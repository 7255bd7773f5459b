package app_test

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
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and client certificates.
type testPKI struct {
	dir     string
	caCert  *x509.Certificate
	caKey   *ecdsa.PrivateKey
	roots   *x509.CertPool
	serial  int64
	caFile  string
	srvCert string
	srvKey  string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir(), serial: 1}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fhirgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.caCert)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	srv := p.leaf(t, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	p.srvCert, p.srvKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server-key.pem")
	writePEM(t, p.srvCert, "CERTIFICATE", srv.Certificate[0])
	keyDER, _ := x509.MarshalECPrivateKey(srv.PrivateKey.(*ecdsa.PrivateKey))
	writePEM(t, p.srvKey, "EC PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// leaf issues a certificate for cn (also an IP SAN when cn is an address).
func (p *testPKI) leaf(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// client is an HTTPS client trusting the test CA, presenting cert when given.
func (p *testPKI) client(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: p.roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 20 * time.Second}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// RFC 8705 end to end over HTTPS: a tls_client_auth client authenticates with its certificate,
// gets a certificate-bound token (cnf x5t#S256), and the FHIR API serves that token only over a
// connection presenting the same certificate. A client registered for bound tokens that connects
// without a certificate gets none.
func TestCertificateBoundTokens(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pki := newTestPKI(t)
	addr := freeAddr(t)
	base := "https://" + addr
	cfg := config.Default()
	cfg.BaseURL, cfg.Addr, cfg.AdminAddr, cfg.DataDir = base, addr, "", t.TempDir()
	cfg.Gateway.TLS = config.TLS{CertFile: pki.srvCert, KeyFile: pki.srvKey, MinVersion: "1.2", ClientAuth: "optional", ClientCAFile: pki.caFile}
	cfg.Clients = []config.Client{
		{
			ClientID: "mtls-backend", TokenEndpointAuthMethod: "tls_client_auth", TLSClientAuthSubjectDN: "CN=mtls-backend",
			CertificateBoundAccessTokens: true, GrantTypes: []string{"client_credentials"}, Scope: "system/*.rs",
		},
		{
			ClientID: "bound-secret", TokenEndpointAuthMethod: "client_secret_basic", ClientSecret: "bound-secret-0123456789",
			CertificateBoundAccessTokens: true, GrantTypes: []string{"client_credentials"}, Scope: "system/*.rs",
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, cfg, app.Options{Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, func(string) { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()

	backendCert := pki.leaf(t, "mtls-backend", x509.ExtKeyUsageClientAuth)
	otherCert := pki.leaf(t, "someone-else", x509.ExtKeyUsageClientAuth)
	withCert, withOther, noCert := pki.client(&backendCert), pki.client(&otherCert), pki.client(nil)

	tokenReq := func(c *http.Client, form url.Values, basic []string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/auth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic != nil {
			req.SetBasicAuth(basic[0], basic[1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	fhirGet := func(c *http.Client, token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/fhir/Patient?_count=1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}, "client_id": {"mtls-backend"}}

	// Discovery advertises RFC 8705 because the listener asks for client certificates.
	resp, err := noCert.Get(base + "/fhir/.well-known/smart-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc["tls_client_certificate_bound_access_tokens"] != true || !strings.Contains(toJSON(doc["token_endpoint_auth_methods_supported"]), "tls_client_auth") {
		t.Errorf("smart-configuration does not advertise RFC 8705: %v", doc)
	}

	for _, tc := range []struct {
		name   string
		client *http.Client
		want   int
	}{
		{"no certificate", noCert, http.StatusUnauthorized},
		{"another client's certificate", withOther, http.StatusUnauthorized},
	} {
		if status, body := tokenReq(tc.client, cc, nil); status != tc.want || body["error"] != "invalid_client" {
			t.Errorf("tls_client_auth with %s = %d %v, want %d invalid_client", tc.name, status, body, tc.want)
		}
	}

	status, body := tokenReq(withCert, cc, nil)
	if status != http.StatusOK {
		t.Fatalf("tls_client_auth token = %d %v", status, body)
	}
	token, _ := body["access_token"].(string)
	if got := cnfThumbprint(t, token); got != thumbprint(backendCert) {
		t.Fatalf("token cnf x5t#S256 = %q, want the client certificate's %q", got, thumbprint(backendCert))
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		want   int
	}{
		{"the bound certificate", withCert, http.StatusOK},
		{"no certificate", noCert, http.StatusUnauthorized},
		{"another certificate", withOther, http.StatusUnauthorized},
	} {
		if got := fhirGet(tc.client, token); got != tc.want {
			t.Errorf("FHIR search with a bound token over %s = %d, want %d", tc.name, got, tc.want)
		}
	}

	// A secret client registered for bound tokens: refused without a certificate, bound with one.
	secretCC := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"}}
	creds := []string{"bound-secret", "bound-secret-0123456789"}
	if status, body := tokenReq(noCert, secretCC, creds); status != http.StatusBadRequest || body["error"] != "invalid_request" {
		t.Errorf("bound-token client without a certificate = %d %v, want 400 invalid_request", status, body)
	}
	status, body = tokenReq(withOther, secretCC, creds)
	if status != http.StatusOK {
		t.Fatalf("bound-token client with a certificate = %d %v", status, body)
	}
	token, _ = body["access_token"].(string)
	if got := cnfThumbprint(t, token); got != thumbprint(otherCert) {
		t.Errorf("token cnf = %q, want the presented certificate's %q", got, thumbprint(otherCert))
	}
	if got := fhirGet(withCert, token); got != http.StatusUnauthorized {
		t.Errorf("bound token over a different certificate = %d, want 401", got)
	}
}

func thumbprint(c tls.Certificate) string {
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	sum := sha256.Sum256(leaf.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// cnfThumbprint reads cnf.x5t#S256 from a JWT's payload (the signature is the server's business).
func cnfThumbprint(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf struct {
			X5t string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Cnf.X5t
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
