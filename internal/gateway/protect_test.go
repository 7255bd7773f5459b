package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

func TestIPRules(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) {
		c.TrustedProxies = []string{"10.0.0.0/8"}
		c.Groups.FHIR.Deny = []string{"198.51.100.0/24", "2001:db8:bad::/48"}
		c.Groups.OAuth.Allow = []string{"192.0.2.0/24"}
		c.Groups.OAuth.Deny = []string{"192.0.2.66"}
	}, gateway.Deps{})
	next := &okHandler{}
	cases := []struct {
		name, group, remote string
		header              map[string]string
		want                int
	}{
		{"admin from loopback", config.GroupAdmin, "127.0.0.1:1", nil, 200},
		{"admin from IPv6 loopback", config.GroupAdmin, "[::1]:1", nil, 200},
		{"admin from the network", config.GroupAdmin, "203.0.113.5:1", nil, 403},
		{"admin with spoofed XFF", config.GroupAdmin, "203.0.113.5:1", map[string]string{"X-Forwarded-For": "127.0.0.1"}, 403},
		{"admin from unknown peer", config.GroupAdmin, "@", nil, 403},
		{"admin via trusted proxy from outside", config.GroupAdmin, "10.0.0.1:1", map[string]string{"X-Forwarded-For": "203.0.113.5"}, 403},
		{"fhir open", config.GroupFHIR, "203.0.113.5:1", nil, 200},
		{"fhir denied range", config.GroupFHIR, "198.51.100.20:1", nil, 403},
		{"fhir denied via proxy", config.GroupFHIR, "10.0.0.1:1", map[string]string{"X-Forwarded-For": "198.51.100.20"}, 403},
		{"fhir denied v6", config.GroupFHIR, "[2001:db8:bad::9]:1", nil, 403},
		{"oauth allowed", config.GroupOAuth, "192.0.2.10:1", nil, 200},
		{"oauth deny wins over allow", config.GroupOAuth, "192.0.2.66:1", nil, 403},
		{"oauth outside allow", config.GroupOAuth, "203.0.113.5:1", nil, 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := next.Calls()
			w := do(g.Wrap(c.group, next), "GET", "/x", c.remote, c.header, "")
			if w.Code != c.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, c.want, w.Body)
			}
			if c.want == 403 {
				if next.Calls() != before {
					t.Error("the handler ran for a refused address")
				}
				if c.group == config.GroupFHIR {
					if code := outcomeCode(t, w); code != "forbidden" {
						t.Errorf("issue code %q, want forbidden", code)
					}
				} else if e := oauthError(t, w); e != "access_denied" {
					t.Errorf("error %q, want access_denied", e)
				}
			}
		})
	}
}

func TestSecurityHeaders(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) { c.TrustedProxies = []string{"10.0.0.0/8"} }, gateway.Deps{})
	common := map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
	api := "default-src 'none'; frame-ancestors 'none'"
	cases := []struct {
		group string
		want  map[string]string // "" means absent
	}{
		{config.GroupFHIR, map[string]string{"Cache-Control": "no-store", "Content-Security-Policy": api, "Pragma": ""}},
		{config.GroupOAuth, map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Security-Policy": api}},
		{config.GroupAdmin, map[string]string{"Cache-Control": "no-store", "Content-Security-Policy": api}},
		{config.GroupLogin, map[string]string{"Cache-Control": "no-store", "Cross-Origin-Opener-Policy": "same-origin",
			"Content-Security-Policy": config.DefaultGateway().Headers.PageCSP}},
		{config.GroupDiscovery, map[string]string{"Cache-Control": "", "Content-Security-Policy": api}},
	}
	for _, c := range cases {
		t.Run(c.group, func(t *testing.T) {
			w := do(g.Wrap(c.group, &okHandler{}), "GET", "/x", "127.0.0.1:1", nil, "")
			for k, v := range common {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k, v := range c.want {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if h := w.Header().Get("Strict-Transport-Security"); h != "" {
				t.Errorf("HSTS %q over plain HTTP", h)
			}
		})
	}
	t.Run("HSTS behind a TLS-terminating trusted proxy", func(t *testing.T) {
		w := do(g.Wrap(config.GroupFHIR, &okHandler{}), "GET", "/x", "10.0.0.1:1", map[string]string{"X-Forwarded-For": "203.0.113.1", "X-Forwarded-Proto": "https"}, "")
		if h := w.Header().Get("Strict-Transport-Security"); h != "max-age=31536000" {
			t.Errorf("HSTS = %q, want max-age=31536000", h)
		}
	})
	t.Run("no HSTS from a spoofed proto", func(t *testing.T) {
		w := do(g.Wrap(config.GroupFHIR, &okHandler{}), "GET", "/x", "203.0.113.1:1", map[string]string{"X-Forwarded-Proto": "https"}, "")
		if h := w.Header().Get("Strict-Transport-Security"); h != "" {
			t.Errorf("HSTS = %q from an untrusted X-Forwarded-Proto", h)
		}
	})
	t.Run("handler may override", func(t *testing.T) {
		h := g.Wrap(config.GroupDiscovery, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=3600")
		}))
		if got := do(h, "GET", "/fhir/metadata", "127.0.0.1:1", nil, "").Header().Get("Cache-Control"); got != "public, max-age=3600" {
			t.Errorf("Cache-Control = %q, want the handler's", got)
		}
	})
}

func TestCORS(t *testing.T) {
	registered := map[string]bool{"https://app.example.org": true}
	g := newGateway(t, func(c *config.Gateway) {
		c.CORS.ExtraOrigins = []string{"https://extra.example.net"}
	}, gateway.Deps{AllowedOrigin: func(o string) bool { return registered[o] }})
	preflight := func(origin, method, headers string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}
	}
	cases := []struct {
		name, group, method, target string
		header                      map[string]string
		wantOrigin                  string // Access-Control-Allow-Origin, "" for none
		wantHandler                 bool
	}{
		{"discovery preflight any origin", config.GroupDiscovery, "OPTIONS", "/.well-known/smart-configuration", preflight("https://evil.example", "GET", ""), "*", false},
		{"metadata GET any origin", config.GroupDiscovery, "GET", "/fhir/metadata", map[string]string{"Origin": "https://any.example"}, "*", true},
		{"fhir preflight registered", config.GroupFHIR, "OPTIONS", "/fhir/Patient/1", preflight("https://app.example.org", "PUT", "authorization,content-type,if-match"), "https://app.example.org", false},
		{"fhir preflight extra origin", config.GroupFHIR, "OPTIONS", "/fhir/Patient", preflight("https://extra.example.net", "GET", "authorization"), "https://extra.example.net", false},
		{"fhir preflight unregistered", config.GroupFHIR, "OPTIONS", "/fhir/Patient", preflight("https://evil.example", "GET", "authorization"), "", false},
		{"fhir preflight look-alike", config.GroupFHIR, "OPTIONS", "/fhir/Patient", preflight("https://app.example.org.evil.example", "GET", "authorization"), "", false},
		{"fhir preflight null origin", config.GroupFHIR, "OPTIONS", "/fhir/Patient", preflight("null", "GET", "authorization"), "", false},
		{"fhir preflight bad method", config.GroupFHIR, "OPTIONS", "/fhir/Patient", preflight("https://app.example.org", "TRACE", ""), "", false},
		{"fhir preflight bad header", config.GroupFHIR, "OPTIONS", "/fhir/Patient", preflight("https://app.example.org", "GET", "x-evil"), "", false},
		{"fhir GET registered", config.GroupFHIR, "GET", "/fhir/Patient", map[string]string{"Origin": "https://app.example.org"}, "https://app.example.org", true},
		{"fhir GET unregistered", config.GroupFHIR, "GET", "/fhir/Patient", map[string]string{"Origin": "https://evil.example"}, "", true},
		{"token preflight registered public client", config.GroupOAuth, "OPTIONS", "/auth/token", preflight("https://app.example.org", "POST", "content-type"), "https://app.example.org", false},
		{"token preflight unregistered", config.GroupOAuth, "OPTIONS", "/auth/token", preflight("https://evil.example", "POST", "content-type"), "", false},
		{"login has no CORS", config.GroupLogin, "OPTIONS", "/auth/login", preflight("https://app.example.org", "POST", "content-type"), "", true},
		{"admin has no CORS", config.GroupAdmin, "GET", "/admin/clients", map[string]string{"Origin": "https://app.example.org"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next := &okHandler{}
			w := do(g.Wrap(c.group, next), c.method, c.target, "127.0.0.1:1", c.header, "")
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != c.wantOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, c.wantOrigin)
			}
			if got := w.Header().Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("Access-Control-Allow-Credentials = %q, want none", got)
			}
			if (next.Calls() > 0) != c.wantHandler {
				t.Errorf("handler called = %v, want %v", next.Calls() > 0, c.wantHandler)
			}
			if c.wantOrigin != "" && c.method == "GET" && !strings.Contains(w.Header().Get("Access-Control-Expose-Headers"), "Ratelimit-Remaining") {
				t.Errorf("Access-Control-Expose-Headers = %q, want the RateLimit fields", w.Header().Get("Access-Control-Expose-Headers"))
			}
			if c.method == "OPTIONS" && c.wantOrigin != "" && w.Code != http.StatusNoContent {
				t.Errorf("preflight status %d, want 204", w.Code)
			}
		})
	}
}

func TestRequestLimits(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) {
		c.MaxBodyBytes = 4096
		c.Groups.OAuth.MaxBodyBytes = 1024
		c.MaxURLLength = 512
		c.MaxQueryParams = 5
		c.Groups.FHIR.RequestTimeout = 7 * time.Second
	}, gateway.Deps{})
	// readAll reports what a handler sees when reading a body past the limit.
	readAll := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		if _, ok := r.Context().Deadline(); ok {
			_, _ = io.WriteString(w, "deadline")
		}
	})
	big := strings.Repeat("x", 5000)
	cases := []struct {
		name, group, method, target, body string
		chunked                           bool
		want                              int
		wantCode                          string // OperationOutcome code or OAuth error
	}{
		{"fhir body within limit", config.GroupFHIR, "POST", "/fhir/Patient", strings.Repeat("x", 4000), false, 200, ""},
		{"fhir body over limit", config.GroupFHIR, "POST", "/fhir/Patient", big, false, 413, "too-costly"},
		{"fhir chunked body over limit", config.GroupFHIR, "POST", "/fhir/Patient", big, true, 413, ""},
		{"oauth body over group limit", config.GroupOAuth, "POST", "/auth/token", strings.Repeat("x", 2000), false, 413, "invalid_request"},
		{"URL too long", config.GroupFHIR, "GET", "/fhir/Patient?name=" + strings.Repeat("a", 600), "", false, 414, "too-long"},
		{"too many params", config.GroupFHIR, "GET", "/fhir/Observation?a=1&b=2&c=3&d=4&e=5&f=6", "", false, 400, "too-costly"},
		{"params at the limit", config.GroupFHIR, "GET", "/fhir/Observation?a=1&b=2&&c=3&d=4&e=5", "", false, 200, ""},
		{"oauth too many params", config.GroupOAuth, "GET", "/auth/authorize?a&b&c&d&e&f", "", false, 400, "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
			if c.chunked {
				r.ContentLength = -1
			}
			r.RemoteAddr = "127.0.0.1:1"
			w := httptest.NewRecorder()
			g.Wrap(c.group, readAll).ServeHTTP(w, r)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, c.want, w.Body)
			}
			switch {
			case c.wantCode == "":
			case c.group == config.GroupFHIR:
				if got := outcomeCode(t, w); got != c.wantCode {
					t.Errorf("issue code %q, want %q", got, c.wantCode)
				}
			default:
				if got := oauthError(t, w); got != c.wantCode {
					t.Errorf("error %q, want %q", got, c.wantCode)
				}
			}
		})
	}
	t.Run("deadline on the context", func(t *testing.T) {
		w := do(g.Wrap(config.GroupFHIR, readAll), "GET", "/fhir/Patient", "127.0.0.1:1", nil, "")
		if w.Body.String() != "deadline" {
			t.Errorf("handler saw no deadline")
		}
	})
}

func TestHeaderSizeLimit(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) { c.MaxHeaderBytes = 8192 }, gateway.Deps{})
	srv := httptest.NewUnstartedServer(g.Wrap(config.GroupFHIR, &okHandler{}))
	g.ConfigureServer(srv.Config)
	srv.Start()
	defer srv.Close()
	for _, c := range []struct {
		size int
		want int
	}{{1000, 200}, {64 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req, _ := http.NewRequest("GET", srv.URL+"/fhir/Patient", nil)
		req.Header.Set("X-Pad", strings.Repeat("p", c.size))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("header of %d bytes: status %d, want %d", c.size, resp.StatusCode, c.want)
		}
	}
	if srv.Config.ReadHeaderTimeout != 10*time.Second {
		t.Errorf("ReadHeaderTimeout = %v, want the configured 10s", srv.Config.ReadHeaderTimeout)
	}
}

// TestChainOverTCP drives the whole chain through a real server: the peer is 127.0.0.1.
func TestChainOverTCP(t *testing.T) {
	g := newGateway(t, nil, gateway.Deps{})
	mux := http.NewServeMux()
	mux.Handle("/fhir/", g.Wrap(config.GroupFHIR, &okHandler{}))
	mux.Handle("/admin/", g.Wrap(config.GroupAdmin, &okHandler{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, path := range []string{"/fhir/Patient", "/admin/clients"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Ratelimit-Limit") == "" {
			t.Errorf("GET %s: %d, headers %v", path, resp.StatusCode, resp.Header)
		}
	}
	// The same admin route reached from a non-loopback address is refused.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	ext := outboundIP(t)
	if ext == "" {
		t.Log("no non-loopback address on this machine; skipping the external half")
		ln.Close()
		return
	}
	srv2 := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = srv2.Serve(ln) }()
	defer srv2.Shutdown(context.Background())
	url := fmt.Sprintf("http://%s:%d/admin/clients", ext, ln.Addr().(*net.TCPAddr).Port)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("admin from %s: %d, want 403", ext, resp.StatusCode)
	}
}

// outboundIP is a non-loopback address of this machine, or "".
func outboundIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

func TestRequestDeadline(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) { c.Groups.FHIR.RequestTimeout = time.Millisecond }, gateway.Deps{})
	// The handler waits for the deadline, then returns without answering, as a cancelled query does.
	giveUp := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	w := do(g.Wrap(config.GroupFHIR, giveUp), "GET", "/fhir/Observation", "127.0.0.1:1", nil, "")
	if w.Code != 503 || outcomeCode(t, w) != "timeout" {
		t.Fatalf("handler past its deadline: %d %s, want 503 timeout", w.Code, w.Body)
	}
	// A handler that answered keeps its answer.
	answered := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		w.WriteHeader(http.StatusGatewayTimeout)
	})
	if w := do(g.Wrap(config.GroupFHIR, answered), "GET", "/fhir/Observation", "127.0.0.1:1", nil, ""); w.Code != http.StatusGatewayTimeout {
		t.Errorf("handler's own answer replaced: %d", w.Code)
	}
}

// TestOversizedChunkedBodyClosesConnection: over a real server, a chunked body past the limit is
// refused with 413 and the connection is closed (the client cannot stream the rest into it).
func TestOversizedChunkedBodyClosesConnection(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) { c.MaxBodyBytes = 4096 }, gateway.Deps{})
	srv := httptest.NewServer(g.Wrap(config.GroupFHIR, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}
	})))
	defer srv.Close()
	pr, pw := io.Pipe()
	go func() {
		chunk := strings.Repeat("x", 1024)
		for range 1 << 14 { // 16 MiB if the server kept reading
			if _, err := io.WriteString(pw, chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", srv.URL+"/fhir/Patient", pr)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pr.CloseWithError(errors.New("done"))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("status %d, Connection close %v; want 413 and a closed connection", resp.StatusCode, resp.Close)
	}
}

func TestWrapUnknownGroupPanics(t *testing.T) {
	g := newGateway(t, nil, gateway.Deps{})
	defer func() {
		if recover() == nil {
			t.Error("Wrap of an unknown group did not panic")
		}
	}()
	g.Wrap("fihr", &okHandler{})
}
