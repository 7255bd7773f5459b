package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, on disk.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	caPool                    *x509.CertPool
	client                    tls.Certificate
	otherClient               tls.Certificate // from a CA the server does not trust
	serverSerial              *big.Int
	caCert                    *x509.Certificate
	caKey                     *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	p.caCert, p.caKey = mkCA(t, "test CA")
	p.caFile = writePEM(t, p.dir, "ca.pem", "CERTIFICATE", p.caCert.Raw)
	p.caPool = x509.NewCertPool()
	p.caPool.AddCert(p.caCert)
	p.certFile, p.keyFile = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server.key")
	p.serverSerial = p.issueServer(t, 1)
	p.client = mkLeaf(t, p.caCert, p.caKey, 10, x509.ExtKeyUsageClientAuth)
	otherCA, otherKey := mkCA(t, "other CA")
	p.otherClient = mkLeaf(t, otherCA, otherKey, 11, x509.ExtKeyUsageClientAuth)
	return p
}

func (p *testPKI) issueServer(t *testing.T, serial int64) *big.Int {
	leaf := mkLeaf(t, p.caCert, p.caKey, serial, x509.ExtKeyUsageServerAuth)
	writePEM(t, p.dir, "server.pem", "CERTIFICATE", leaf.Certificate[0])
	der, err := x509.MarshalECPrivateKey(leaf.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.dir, "server.key", "EC PRIVATE KEY", der)
	return big.NewInt(serial)
}

func mkCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func mkLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, usage x509.ExtKeyUsage) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// serveTLS serves h with the gateway's server configuration on 127.0.0.1 and returns its address.
func serveTLS(t *testing.T, g *gateway.Gateway, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	g.ConfigureServer(srv)
	if srv.TLSConfig == nil {
		t.Fatal("ServerTLSConfig is nil with TLS configured")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func get(addr, path string, cfg *tls.Config) (*http.Response, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	resp, err := c.Get("https://" + addr + path)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestTLSAndMTLS(t *testing.T) {
	p := newPKI(t)
	tlsOn := func(auth string) func(*config.Gateway) {
		return func(c *config.Gateway) {
			c.TLS = config.TLS{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: "1.2", ClientAuth: auth}
			if auth != "none" {
				c.TLS.ClientCAFile = p.caFile
			}
		}
	}
	mux := func(g *gateway.Gateway) http.Handler {
		m := http.NewServeMux()
		m.Handle("/fhir/", g.Wrap(config.GroupFHIR, &okHandler{}))
		m.Handle("/admin/", g.Wrap(config.GroupAdmin, &okHandler{}))
		return m
	}
	base := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: p.caPool, Certificates: certs}
	}
	// forced presents a certificate whatever CAs the server names, as an attacker would.
	forced := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: p.caPool, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }}
	}

	t.Run("server TLS", func(t *testing.T) {
		g := newGateway(t, tlsOn("none"), gateway.Deps{})
		addr := serveTLS(t, g, mux(g))
		resp, err := get(addr, "/fhir/Patient", base())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("HSTS = %q over TLS", resp.Header.Get("Strict-Transport-Security"))
		}
		old := base()
		old.MaxVersion = tls.VersionTLS11
		if _, err := get(addr, "/fhir/Patient", old); err == nil {
			t.Error("a TLS 1.1 client connected")
		}
	})

	t.Run("min version 1.3", func(t *testing.T) {
		g := newGateway(t, func(c *config.Gateway) { tlsOn("none")(c); c.TLS.MinVersion = "1.3" }, gateway.Deps{})
		addr := serveTLS(t, g, mux(g))
		c := base()
		c.MaxVersion = tls.VersionTLS12
		if _, err := get(addr, "/fhir/Patient", c); err == nil {
			t.Error("a TLS 1.2 client connected to a 1.3-only server")
		}
	})

	t.Run("mTLS required", func(t *testing.T) {
		g := newGateway(t, tlsOn("require"), gateway.Deps{})
		addr := serveTLS(t, g, mux(g))
		if _, err := get(addr, "/fhir/Patient", base()); err == nil {
			t.Error("connected without a client certificate")
		}
		if _, err := get(addr, "/fhir/Patient", forced(p.otherClient)); err == nil {
			t.Error("connected with a certificate from an untrusted CA")
		}
		resp, err := get(addr, "/fhir/Patient", base(p.client))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("with a client certificate: %v %v", resp, err)
		}
	})

	t.Run("mTLS optional, required on admin", func(t *testing.T) {
		g := newGateway(t, func(c *config.Gateway) {
			tlsOn("optional")(c)
			c.Groups.Admin.RequireClientCert = true
		}, gateway.Deps{})
		addr := serveTLS(t, g, mux(g))
		cases := []struct {
			path string
			cert []tls.Certificate
			want int
		}{
			{"/fhir/Patient", nil, 200},
			{"/admin/clients", nil, 403},
			{"/admin/clients", []tls.Certificate{p.client}, 200},
		}
		for _, c := range cases {
			resp, err := get(addr, c.path, base(c.cert...))
			if err != nil {
				t.Fatalf("%s: %v", c.path, err)
			}
			if resp.StatusCode != c.want {
				t.Errorf("%s with %d certs: %d, want %d", c.path, len(c.cert), resp.StatusCode, c.want)
			}
		}
		if _, err := get(addr, "/fhir/Patient", forced(p.otherClient)); err == nil {
			t.Error("optional mode accepted a certificate from an untrusted CA")
		}
	})

	t.Run("certificate reload", func(t *testing.T) {
		clk := newClock()
		g := newGateway(t, tlsOn("none"), gateway.Deps{Now: clk.Now})
		addr := serveTLS(t, g, mux(g))
		serial := func() *big.Int {
			c, err := tls.Dial("tcp", addr, base())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].SerialNumber
		}
		if s := serial(); s.Cmp(big.NewInt(1)) != 0 {
			t.Fatalf("serial %v, want 1", s)
		}
		p.issueServer(t, 2)
		future := time.Now().Add(time.Minute)
		_ = os.Chtimes(p.certFile, future, future)
		_ = os.Chtimes(p.keyFile, future, future)
		if s := serial(); s.Cmp(big.NewInt(1)) != 0 {
			t.Fatalf("reloaded before the check interval: serial %v", s)
		}
		clk.Advance(2 * time.Minute)
		if s := serial(); s.Cmp(big.NewInt(2)) != 0 {
			t.Fatalf("after renewal: serial %v, want 2", s)
		}
	})

	t.Run("bad files fail New", func(t *testing.T) {
		cfg := config.DefaultGateway()
		cfg.TLS = config.TLS{CertFile: filepath.Join(p.dir, "missing.pem"), KeyFile: p.keyFile, MinVersion: "1.2", ClientAuth: "none"}
		if _, err := gateway.New(cfg, gateway.Deps{}); err == nil {
			t.Error("New accepted a missing certificate file")
		}
		cfg.TLS = config.TLS{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: "1.2", ClientAuth: "require", ClientCAFile: p.keyFile}
		if _, err := gateway.New(cfg, gateway.Deps{}); err == nil {
			t.Error("New accepted a client CA file without certificates")
		}
	})

	t.Run("TLS off", func(t *testing.T) {
		g := newGateway(t, nil, gateway.Deps{})
		if g.ServerTLSConfig() != nil {
			t.Error("ServerTLSConfig is not nil without TLS")
		}
	})
	_ = errors.New
}
