package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// The whole server with demo data: a backend client gets a token with client_credentials and
// searches the demo patients; without a token the FHIR API answers 401.
func TestDemoServer(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = t.TempDir()
	cfg.Demo = true
	cfg.DemoPatients = 5
	cfg.AdminAddr = "127.0.0.1:0" // built for its /metrics; never listening here
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	a, err := app.New(ctx, cfg, app.Options{Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var out strings.Builder
	if err := a.LoadDemo(ctx, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alice") || !strings.Contains(out.String(), "Patient 5") {
		t.Errorf("LoadDemo printed %q", out.String())
	}
	srv.Config.Handler = a.Handler()
	srv.Start()
	defer srv.Close()

	get := func(path, token string) (int, []byte) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if status, _ := get("/fhir/Patient?_count=5", ""); status != http.StatusUnauthorized {
		t.Errorf("search without a token = %d, want 401", status)
	}
	for _, path := range []string{"/fhir/metadata", "/fhir/.well-known/smart-configuration", "/.well-known/openid-configuration", "/healthz", "/readyz"} {
		if status, body := get(path, ""); status != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, status, body)
		}
	}

	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
	req, _ := http.NewRequest("POST", base+"/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-confidential", "demo-confidential-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("client_credentials = %d", resp.StatusCode)
	}
	status, body := get("/fhir/Patient?_count=5", tok.AccessToken)
	var bundle struct {
		ResourceType, Type string
		Entry              []struct {
			Resource struct{ ResourceType, ID string }
		}
	}
	if err := json.Unmarshal(body, &bundle); err != nil || status != 200 {
		t.Fatalf("search = %d %s", status, body)
	}
	if bundle.Type != "searchset" || len(bundle.Entry) != 5 || bundle.Entry[0].Resource.ResourceType != "Patient" {
		t.Errorf("Patient?_count=5 = %s", body)
	}
	// A system/*.rs token cannot write.
	req, _ = http.NewRequest("POST", base+"/fhir/Patient", strings.NewReader(`{"resourceType":"Patient"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("create with a read-only token = %d, want 403", resp.StatusCode)
	}

	// Only auditors read the trail through the API; a backend token without the role is refused.
	if status, body := get("/fhir/AuditEvent?_count=100", tok.AccessToken); status != http.StatusForbidden {
		t.Errorf("AuditEvent search without the auditor role = %d %s", status, body)
	}
	// Every FHIR request above is in the audit trail, allowed or denied, one event each.
	entries, err := a.Store().ListAuditEntries(ctx, sqlstore.AuditFilter{Ascending: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+":"+e.Outcome)
	}
	for _, w := range []string{"search-type:denied", "capabilities:success", "search-type:success", "create:denied", "token-issued:success"} {
		found := false
		for _, g := range got {
			if g == w {
				found = true
			}
		}
		if !found {
			t.Errorf("audit trail %v lacks %s", got, w)
		}
	}
	// The trail is append-only through the API.
	req, _ = http.NewRequest("POST", base+"/fhir/AuditEvent", strings.NewReader(`{"resourceType":"AuditEvent"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/fhir+json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST AuditEvent = %d, want 405", resp.StatusCode)
	}

	// The store latency metric is fed by the FHIR API's backend calls.
	scrape := httptest.NewRequest("GET", "/metrics", nil)
	scrape.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(rec, scrape)
	if !strings.Contains(rec.Body.String(), `fhirgate_store_operation_duration_seconds_count{op="fhir.search",result="ok"}`) {
		t.Errorf("/metrics = %d without the store latency of the searches above", rec.Code)
	}
}

// /readyz is served on the public listener: it says what is unavailable, never the internal
// cause (a Redis address, the engine's settings).
func TestReadyzDoesNotRevealInternalAddresses(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.BaseURL = "http://fhirgate.test"
	cfg.DataDir = t.TempDir()
	cfg.AdminAddr = ""
	cfg.Gateway.RateLimit.Enabled = true
	cfg.Gateway.RateLimit.Engine = "redis"
	cfg.Gateway.RateLimit.Redis.Addr = "127.0.0.1:1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, cfg, app.Options{Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://fhirgate.test/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down = %d %s, want 503", rec.Code, rec.Body)
	}
	if body := rec.Body.String(); strings.Contains(body, "127.0.0.1") || strings.Contains(body, "dial") {
		t.Errorf("readyz revealed the internal cause: %q", body)
	}
}
