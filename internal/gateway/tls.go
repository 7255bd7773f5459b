package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
)

// certCheckInterval is how often the certificate files are checked for a renewal.
const certCheckInterval = time.Minute

// newServerTLS builds the listener's TLS configuration: TLS 1.2 or 1.3 at least (Go's default
// cipher suites, all AEAD with forward secrecy), HTTP/2 and HTTP/1.1, the server certificate
// reloaded when its files change (checked at most once a minute, so a renewed certificate is
// served without a restart), and the client certificate policy with its CA pool.
func newServerTLS(c config.TLS, now func() time.Time, log *slog.Logger) (*tls.Config, error) {
	rl := &certReloader{certFile: c.CertFile, keyFile: c.KeyFile, now: now, log: log}
	if err := rl.load(); err != nil {
		return nil, err
	}
	t := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: rl.get,
	}
	if c.MinVersion == "1.3" {
		t.MinVersion = tls.VersionTLS13
	}
	switch c.ClientAuth {
	case "optional":
		t.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		t.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		t.ClientAuth = tls.NoClientCert
	}
	if t.ClientAuth != tls.NoClientCert {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("gateway.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("gateway.tls.client_ca_file: %s holds no PEM certificate", c.ClientCAFile)
		}
		t.ClientCAs = pool
	}
	return t, nil
}

// certReloader serves the certificate in certFile/keyFile and reloads it when either file's
// modification time changes. A failed reload keeps the previous certificate and is logged.
type certReloader struct {
	certFile, keyFile string
	now               func() time.Time
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     [2]time.Time
	checkedAt time.Time
}

func (c *certReloader) stamps() ([2]time.Time, error) {
	var s [2]time.Time
	for i, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, err
		}
		s[i] = fi.ModTime()
	}
	return s, nil
}

func (c *certReloader) load() error {
	st, err := c.stamps()
	if err != nil {
		return fmt.Errorf("gateway.tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("gateway.tls: %w", err)
	}
	c.mu.Lock()
	c.cert, c.stamp, c.checkedAt = &cert, st, c.now()
	c.mu.Unlock()
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	due := c.now().Sub(c.checkedAt) >= certCheckInterval
	if due {
		c.checkedAt = c.now()
	}
	cert, old := c.cert, c.stamp
	c.mu.Unlock()
	if !due {
		return cert, nil
	}
	if st, err := c.stamps(); err == nil && st != old {
		if err := c.load(); err != nil {
			c.log.Error("TLS certificate reload failed; serving the previous one", "error", err)
		} else {
			c.log.Info("TLS certificate reloaded", "cert_file", c.certFile)
		}
		c.mu.Lock()
		cert = c.cert
		c.mu.Unlock()
	}
	return cert, nil
}
