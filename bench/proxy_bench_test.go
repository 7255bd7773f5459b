package bench

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demo"
)

// The proxy's added latency: the same FHIR requests sent to a plain fhirgate (FHIR security
// off, its own SQLite store with demo data) directly, and through a second fhirgate in proxy mode
// in front of it (token verification, policy, narrowing, the upstream hop over loopback HTTP,
// decoding and the response filter). Direct and proxied requests alternate in one loop so that
// both see the same machine state; the figure is the ratio.

func startBenchServer(b *testing.B, configure func(*config.Config), load bool) (base string) {
	b.Helper()
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base = "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = b.TempDir()
	cfg.AdminAddr = ""
	cfg.Demo = true
	cfg.DemoPatients = 10
	cfg.Gateway.RateLimit.Enabled = false
	configure(&cfg)
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	a, err := app.New(ctx, cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	if load {
		if err := a.LoadDemo(ctx, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	srv.Config.Handler = a.Handler()
	srv.Start()
	b.Cleanup(srv.Close)
	return base
}

func benchGet(b *testing.B, c *http.Client, u, token string) {
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s = %d", u, resp.StatusCode)
	}
}

func BenchmarkProxyAddedLatency(b *testing.B) {
	if testing.Short() {
		b.Skip("starts two servers")
	}
	up := startBenchServer(b, func(c *config.Config) { c.FHIR.Security.Mode = config.FHIRSecurityOff }, true)
	proxy := startBenchServer(b, func(c *config.Config) { c.Upstream.URL = up + "/fhir"; c.Upstream.Timeout = 10 * time.Second }, false)

	// A system/*.rs token from the proxy's own authorization server (demo confidential client).
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
	req, _ := http.NewRequest("POST", proxy+"/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-confidential", "demo-confidential-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.AccessToken == "" {
		b.Fatalf("no token: %d", resp.StatusCode)
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for _, tc := range []struct{ name, path string }{
		{"read", "/Patient/" + demo.AlicePatientID},
		{"search-20", "/Observation?patient=" + demo.AlicePatientID + "&_count=20"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchGet(b, c, up+"/fhir"+tc.path, "")
			benchGet(b, c, proxy+"/fhir"+tc.path, tok.AccessToken)
			var direct, proxied time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				benchGet(b, c, up+"/fhir"+tc.path, "")
				t1 := time.Now()
				benchGet(b, c, proxy+"/fhir"+tc.path, tok.AccessToken)
				direct += t1.Sub(t0)
				proxied += time.Since(t1)
			}
			n := float64(b.N)
			b.ReportMetric(float64(direct.Microseconds())/n, "direct-µs/op")
			b.ReportMetric(float64(proxied.Microseconds())/n, "proxy-µs/op")
			b.ReportMetric(float64(proxied)/float64(direct), "proxy/direct")
		})
	}
}
