package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

// echoIP answers "<client ip> <secure>".
var echoIP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	s := gateway.ScopeFrom(r.Context())
	sec := "http"
	if s.Secure {
		sec = "https"
	}
	_, _ = io.WriteString(w, s.ClientIP.String()+" "+sec)
})

func TestClientIP(t *testing.T) {
	xff := newGateway(t, func(c *config.Gateway) {
		c.TrustedProxies = []string{"10.0.0.0/8", "2001:db8:ffff::/48"}
	}, gateway.Deps{}).Wrap(config.GroupFHIR, echoIP)
	fwd := newGateway(t, func(c *config.Gateway) {
		c.TrustedProxies = []string{"10.0.0.0/8"}
		c.ForwardedHeader = "forwarded"
	}, gateway.Deps{}).Wrap(config.GroupFHIR, echoIP)
	none := newGateway(t, nil, gateway.Deps{}).Wrap(config.GroupFHIR, echoIP)

	cases := []struct {
		name   string
		h      http.Handler
		remote string
		header map[string]string
		want   string
	}{
		{"no proxy", xff, "203.0.113.9:5000", nil, "203.0.113.9 http"},
		{"spoofed XFF from untrusted peer", xff, "203.0.113.9:5000", map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}, "203.0.113.9 http"},
		{"spoofed XFF with no trusted proxies", none, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "127.0.0.1"}, "10.1.1.1 http"},
		{"trusted proxy", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}, "198.51.100.7 https"},
		{"client-supplied prefix ignored", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "127.0.0.1, 198.51.100.7"}, "198.51.100.7 http"},
		{"two trusted hops", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.2.2.2"}, "198.51.100.7 http"},
		{"all hops trusted", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "10.3.3.3, 10.2.2.2"}, "10.3.3.3 http"},
		{"garbage where the proxy writes", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "198.51.100.7, not-an-ip"}, "10.1.1.1 http"},
		{"port in XFF", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "198.51.100.7:4711"}, "198.51.100.7 http"},
		{"IPv6 peer and hop", xff, "[2001:db8:ffff::1]:443", map[string]string{"X-Forwarded-For": "[2001:db8::5]:1"}, "2001:db8::5 http"},
		{"IPv4-mapped peer", xff, "[::ffff:10.1.1.1]:5000", map[string]string{"X-Forwarded-For": "198.51.100.7"}, "198.51.100.7 http"},
		{"last proto wins", xff, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https, http"}, "198.51.100.7 http"},
		{"Forwarded", fwd, "10.1.1.1:5000", map[string]string{"Forwarded": `for=198.51.100.7;proto=https`}, "198.51.100.7 https"},
		{"Forwarded quoted v6", fwd, "10.1.1.1:5000", map[string]string{"Forwarded": `for="_hidden", for="[2001:db8::7]:4711";proto=http`}, "2001:db8::7 http"},
		{"Forwarded spoofed from untrusted", fwd, "203.0.113.9:5000", map[string]string{"Forwarded": `for=127.0.0.1`}, "203.0.113.9 http"},
		{"Forwarded unknown", fwd, "10.1.1.1:5000", map[string]string{"Forwarded": `for=unknown`}, "10.1.1.1 http"},
		{"XFF ignored in Forwarded mode", fwd, "10.1.1.1:5000", map[string]string{"X-Forwarded-For": "127.0.0.1"}, "10.1.1.1 http"},
		{"unix socket peer", xff, "@", nil, "invalid IP http"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := do(c.h, "GET", "/fhir/Patient", c.remote, c.header, "")
			if got := w.Body.String(); got != c.want {
				t.Errorf("client = %q, want %q", got, c.want)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	h := newGateway(t, func(c *config.Gateway) { c.TrustedProxies = []string{"10.0.0.0/8"} }, gateway.Deps{}).
		Wrap(config.GroupFHIR, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, gateway.RequestID(r.Context()))
		}))
	cases := []struct {
		name, remote, in string
		keep             bool
	}{
		{"from trusted proxy", "10.0.0.1:1", "abc-123_x.y", true},
		{"from untrusted peer", "203.0.113.1:1", "abc-123", false},
		{"log injection from trusted proxy", "10.0.0.1:1", "a\"b c", false},
		{"none", "203.0.113.1:1", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := do(h, "GET", "/fhir/Patient", c.remote, map[string]string{"X-Request-Id": c.in}, "")
			got := w.Header().Get("X-Request-Id")
			if got != w.Body.String() || got == "" {
				t.Fatalf("X-Request-Id header %q, handler saw %q", got, w.Body.String())
			}
			if (got == c.in) != c.keep {
				t.Errorf("request id %q for incoming %q, keep = %v", got, c.in, c.keep)
			}
		})
	}
}

func TestRecover(t *testing.T) {
	g := newGateway(t, nil, gateway.Deps{})
	boom := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })
	w := do(g.Wrap(config.GroupFHIR, boom), "GET", "/fhir/Patient/1", "192.0.2.1:1", nil, "")
	if w.Code != 500 || outcomeCode(t, w) != "exception" {
		t.Errorf("panic on fhir: %d %s", w.Code, w.Body)
	}
	w = do(g.Wrap(config.GroupOAuth, boom), "POST", "/auth/token", "192.0.2.1:1", nil, "")
	if w.Code != 500 || oauthError(t, w) != "server_error" {
		t.Errorf("panic on oauth: %d %s", w.Code, w.Body)
	}
	// Over a real server: the connection survives as a 500, and a panic after the response
	// started does not append a second body.
	srv := httptest.NewServer(g.Wrap(config.GroupFHIR, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partial")
		panic("late")
	})))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/fhir/Patient")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "partial" {
			t.Errorf("late panic: %d %q, want the partial 200 body only", resp.StatusCode, b)
		}
	}
}
