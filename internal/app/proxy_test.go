package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
)

// plainUpstream is a fhirgate with FHIR security off and the demo data in its own store: the
// "existing FHIR server" a proxy secures.
type plainUpstream struct {
	url string // the FHIR base the proxy is pointed at
	// stripped counts the narrowing values the upstream was made to ignore.
	stripped atomic.Int64
	// requests counts the requests the upstream answered.
	requests atomic.Int64
}

// startPlainUpstream starts the unsecured upstream. With ignore set, a handler in front of it
// drops every value of one parameter the proxy adds from the token's scopes (the category of
// patient/Observation.rs?category=system|laboratory), as an upstream that does not support a
// parameter would: the proxy must not leak what it then returns.
func startPlainUpstream(t *testing.T, ignore string) *plainUpstream {
	t.Helper()
	var up *plainUpstream
	up = startPlainUpstreamWith(t, func(r *http.Request) {
		if ignore == "" {
			return
		}
		q := r.URL.Query()
		if vals, ok := q[ignore]; ok {
			var keep []string
			for _, v := range vals {
				if strings.Contains(v, "|") {
					up.stripped.Add(1)
					continue
				}
				keep = append(keep, v)
			}
			if keep == nil {
				q.Del(ignore)
			} else {
				q[ignore] = keep
			}
			r.URL.RawQuery = q.Encode()
		}
	})
	return up
}

// startPlainUpstreamWith starts the unsecured upstream behind a handler that may rewrite each
// request (nil: none).
func startPlainUpstreamWith(t *testing.T, rewrite func(r *http.Request)) *plainUpstream {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Demo = true
	cfg.DemoPatients = 20
	cfg.AdminAddr = ""
	cfg.Gateway.RateLimit.Enabled = false
	cfg.FHIR.Security.Mode = config.FHIRSecurityOff
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, cfg, app.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Lookup: func(string) (string, bool) { return "", false },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.LoadDemo(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	up := &plainUpstream{url: base + "/fhir"}
	h := a.Handler()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up.requests.Add(1)
		if rewrite != nil {
			rewrite(r)
		}
		h.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return up
}

// The isolation suite of "Access enforcement", unchanged, against a proxy in front of a plain
// fhirgate over real HTTP: once with an honest upstream (totals trusted), once with an upstream
// that ignores the narrowing of a granular scope.
func TestPatientIsolationThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two servers with 20 demo patients")
	}
	for _, tc := range []struct {
		name   string
		ignore string
	}{
		{"honest upstream", ""},
		{"upstream ignoring the scope's category", "category"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startPlainUpstream(t, tc.ignore)
			s := startIsolationServer(t, func(c *config.Config) {
				c.Upstream.URL = up.url
				c.Upstream.TrustTotals = tc.ignore == ""
				c.Upstream.Timeout = 20 * time.Second
			})
			runIsolationSuite(t, s)
			if up.requests.Load() == 0 {
				t.Fatal("the proxy never called the upstream")
			}
			if tc.ignore != "" && up.stripped.Load() == 0 {
				t.Errorf("no %s narrowing reached the upstream: the ignoring upstream was not exercised", tc.ignore)
			}
			t.Logf("upstream answered %d requests, ignored %d narrowing values", up.requests.Load(), up.stripped.Load())
		})
	}
}

// An upstream that ignores the compartment altogether (a compartment search answers every
// patient's resources) or answers another resource than the one asked: the proxy's response
// filter and checks keep A's answers to A's data.
func TestProxyLyingUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two servers with 20 demo patients")
	}
	var rewritten atomic.Int64
	up := startPlainUpstreamWith(t, func(r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		switch {
		case len(parts) == 4 && parts[1] == "Patient" && r.Method == http.MethodGet:
			// fhir/Patient/{id}/{type}: drop the compartment.
			r.URL.Path = "/fhir/" + parts[3]
			rewritten.Add(1)
		case len(parts) == 3 && parts[1] == "Patient" && parts[2] == patientA:
			// A read of A's Patient answers B's.
			r.URL.Path = "/fhir/Patient/" + patientB
			rewritten.Add(1)
		}
	})
	s := startIsolationServer(t, func(c *config.Config) { c.Upstream.URL = up.url })
	token, _, _ := s.browser().patientToken("alice", "alice-demo-password", "launch/patient patient/*.rs")
	for _, path := range []string{"/Observation?_count=50", "/Condition", "/Patient/" + patientA + "/Observation", "/Encounter?_revinclude=Observation:encounter"} {
		r := s.walk(request{method: "GET", path: path}, token)
		if r.status != http.StatusOK {
			t.Fatalf("%s = %d", path, r.status)
		}
		s.noOtherPatient(t, path, r)
		if len(r.matches) == 0 {
			t.Errorf("%s: none of A's resources came back", path)
		}
		if r.total != nil {
			t.Errorf("%s: a total from the upstream was passed on (trust_totals is off)", path)
		}
	}
	if r := s.do("GET", "/Patient/"+patientA, token, "", ""); r.status == http.StatusOK || strings.Contains(r.raw, patientB) {
		t.Errorf("a read answered with another patient: %d %.300s", r.status, r.raw)
	}
	if rewritten.Load() == 0 {
		t.Fatal("the lying upstream was never exercised")
	}
}
