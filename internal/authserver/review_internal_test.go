package authserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A dynamically registered client's JWKS URL is dialed only at public addresses, checked after
// name resolution, so a public-looking host name that resolves to an internal address (DNS
// rebinding, or a name pointing at 127.0.0.1 / 169.254.169.254) is not fetched.
func TestJWKSFetchPublicOnlyRefusesInternalAddresses(t *testing.T) {
	var hit atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit.Store(true)
		w.Write([]byte(`{"keys":[]}`))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	f := &jwksFetcher{client: &http.Client{Timeout: 5 * time.Second}, log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	// "localhost" passes the URL check (loopback http is allowed for configured clients) but
	// resolves to a loopback address, which the guarded dialer refuses.
	u := "http://localhost:" + port + "/jwks"
	if _, err := f.get(context.Background(), u, false, true); err == nil || !strings.Contains(err.Error(), "not public") {
		t.Fatalf("public-only fetch of a loopback address: %v", err)
	}
	if hit.Load() {
		t.Fatal("the internal server was reached")
	}
	// Configured (admin) clients may use internal JWKS URLs.
	if _, err := f.get(context.Background(), u, false, false); err != nil {
		t.Fatalf("configured client fetch: %v", err)
	}
	for _, ip := range []string{"127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "224.0.0.1"} {
		if publicIP(net.ParseIP(ip)) {
			t.Errorf("%s counted as public", ip)
		}
	}
	for _, ip := range []string{"8.8.8.8", "2001:4860:4860::8888"} {
		if !publicIP(net.ParseIP(ip)) {
			t.Errorf("%s counted as internal", ip)
		}
	}
}
