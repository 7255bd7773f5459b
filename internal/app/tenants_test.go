package app_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
)

// testIssuer is an independent OIDC provider started in the test with its own keys: discovery,
// a JWKS that rotates, and RFC 7662 introspection of opaque tokens.
type testIssuer struct {
	t   *testing.T
	url string

	mu     sync.Mutex
	key    *ecdsa.PrivateKey
	kid    string
	opaque map[string]map[string]any

	jwksFetches, introspections atomic.Int64
}

const introspectionSecret = "introspection-secret-0123456789abcdef"

func startTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	iss := &testIssuer{t: t, opaque: map[string]map[string]any{}}
	iss.rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss.url, "authorization_endpoint": iss.url + "/authorize", "token_endpoint": iss.url + "/token",
			"jwks_uri": iss.url + "/jwks", "introspection_endpoint": iss.url + "/introspect",
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		iss.jwksFetches.Add(1)
		iss.mu.Lock()
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: iss.key.Public(), KeyID: iss.kid, Algorithm: "ES256", Use: "sig"}}}
		iss.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		iss.introspections.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "fhirgate" || secret != introspectionSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_ = r.ParseForm()
		iss.mu.Lock()
		claims, ok := iss.opaque[r.Form.Get("token")]
		iss.mu.Unlock()
		if !ok {
			claims = map[string]any{"active": false}
		}
		_ = json.NewEncoder(w).Encode(claims)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.url = srv.URL
	return iss
}

// rotate replaces the signing key: the JWKS then publishes only the new one.
func (iss *testIssuer) rotate() {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		iss.t.Fatal(err)
	}
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.key, iss.kid = k, "k"+time.Now().Format("150405.000000000")
}

// sign makes a JWT access token with the current key (or with key/kid when given).
func (iss *testIssuer) sign(claims map[string]any, key *ecdsa.PrivateKey, kid string) string {
	iss.mu.Lock()
	if key == nil {
		key, kid = iss.key, iss.kid
	}
	iss.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid))
	if err != nil {
		iss.t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		iss.t.Fatal(err)
	}
	return tok
}

func (iss *testIssuer) claims(aud, patient, scope string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss.url, "sub": "user-1", "aud": []string{aud}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"azp": "ext-app", "scp": strings.Fields(scope), "ctx": map[string]any{"patient": patient},
	}
}

func fhirGet(t *testing.T, u, token string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body, string(raw)
}

// A tenant that trusts an independent issuer: discovery, JWKS with rotation, introspection
// (cached), claim mapping, SMART versions; the tenant's data on an upstream, its URLs on the
// tenant's base.
func TestTenantExternalIssuer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an upstream with demo data and a proxy")
	}
	iss := startTestIssuer(t)
	up := startPlainUpstream(t, "")
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = t.TempDir()
	cfg.AdminAddr = ""
	cfg.Gateway.RateLimit.Enabled = false
	cfg.Tenants = []config.Tenant{
		{Name: "ext", Upstream: config.Upstream{URL: up.url}, Authorization: config.TenantAuthorization{
			Issuer: iss.url, Mode: "jwks", Claims: config.TenantClaims{Scope: "scp", Patient: "ctx.patient"},
		}},
		{Name: "intro", Upstream: config.Upstream{URL: up.url}, SMARTVersions: []string{"v2"}, Authorization: config.TenantAuthorization{
			Issuer: iss.url, Mode: "introspection", ClientID: "fhirgate", ClientSecretEnv: "INTRO_SECRET", CacheMax: time.Minute,
		}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"INTRO_SECRET": introspectionSecret}
	a, err := app.New(context.Background(), cfg, app.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	ext, intro := base+"/t/ext/fhir", base+"/t/intro/fhir"

	t.Run("smart-configuration points to the issuer", func(t *testing.T) {
		status, doc, raw := fhirGet(t, ext+"/.well-known/smart-configuration", "")
		if status != 200 || doc["issuer"] != iss.url || doc["token_endpoint"] != iss.url+"/token" || doc["authorization_endpoint"] != iss.url+"/authorize" {
			t.Fatalf("smart-configuration = %d %s", status, raw)
		}
		_, doc, _ = fhirGet(t, intro+"/.well-known/smart-configuration", "")
		caps, _ := json.Marshal(doc["capabilities"])
		if !strings.Contains(string(caps), "permission-v2") || strings.Contains(string(caps), "permission-v1") {
			t.Errorf("v2-only tenant capabilities = %s", caps)
		}
		if status, _, _ := fhirGet(t, ext+"/metadata", ""); status != 200 {
			t.Errorf("tenant CapabilityStatement = %d", status)
		}
	})

	tokA := iss.sign(iss.claims(ext, patientA, "patient/*.rs"), nil, "")
	t.Run("jwks: the patient's data, nothing else, on the tenant's URLs", func(t *testing.T) {
		if status, _, raw := fhirGet(t, ext+"/Patient/"+patientA, tokA); status != 200 {
			t.Fatalf("read own Patient = %d %.300s", status, raw)
		}
		if status, _, _ := fhirGet(t, ext+"/Patient/"+patientB, tokA); status == 200 {
			t.Fatalf("read another Patient = 200")
		}
		status, body, raw := fhirGet(t, ext+"/Observation?_count=5", tokA)
		if status != 200 {
			t.Fatalf("search = %d %.300s", status, raw)
		}
		if strings.Contains(raw, patientB) || strings.Contains(raw, up.url) {
			t.Errorf("the tenant's answer names B or the upstream: %.500s", raw)
		}
		entries, _ := body["entry"].([]any)
		if len(entries) == 0 {
			t.Fatal("no Observations for A")
		}
		for _, e := range entries {
			if fu, _ := e.(map[string]any)["fullUrl"].(string); !strings.HasPrefix(fu, ext+"/") {
				t.Errorf("fullUrl %q is not on the tenant's base", fu)
			}
		}
		links, _ := body["link"].([]any)
		for _, l := range links {
			if u, _ := l.(map[string]any)["url"].(string); !strings.HasPrefix(u, ext+"/") {
				t.Errorf("link %q is not on the tenant's base", u)
			}
		}
	})

	t.Run("jwks: refused tokens", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		wrongIss := iss.claims(ext, patientA, "patient/*.rs")
		wrongIss["iss"] = "https://evil.example"
		expired := iss.claims(ext, patientA, "patient/*.rs")
		expired["exp"] = time.Now().Add(-time.Hour).Unix()
		for name, tok := range map[string]string{
			"audience of the default tenant": iss.sign(iss.claims(base+"/fhir", patientA, "patient/*.rs"), nil, ""),
			"audience of another tenant":     iss.sign(iss.claims(intro, patientA, "patient/*.rs"), nil, ""),
			"unpublished key":                iss.sign(iss.claims(ext, patientA, "patient/*.rs"), other, "not-published"),
			"another issuer":                 iss.sign(wrongIss, nil, ""),
			"expired":                        iss.sign(expired, nil, ""),
			"garbage":                        "not.a.jwt",
		} {
			if status, _, _ := fhirGet(t, ext+"/Patient/"+patientA, tok); status != http.StatusUnauthorized {
				t.Errorf("%s: status %d, want 401", name, status)
			}
		}
		if status, _, _ := fhirGet(t, base+"/fhir/Patient/"+patientA, tokA); status != http.StatusUnauthorized {
			t.Errorf("the tenant's token on the default tenant = %d, want 401", status)
		}
	})

	t.Run("jwks rotation: a new kid is fetched, the retired key stops working", func(t *testing.T) {
		before := iss.jwksFetches.Load()
		time.Sleep(10*time.Second + 100*time.Millisecond) // the verifier's least time between two unknown-kid fetches
		iss.rotate()
		tokNew := iss.sign(iss.claims(ext, patientA, "patient/*.rs"), nil, "")
		if status, _, raw := fhirGet(t, ext+"/Patient/"+patientA, tokNew); status != 200 {
			t.Fatalf("token with the rotated key = %d %.300s", status, raw)
		}
		if iss.jwksFetches.Load() <= before {
			t.Error("the JWKS was not fetched again for the new kid")
		}
		if status, _, _ := fhirGet(t, ext+"/Patient/"+patientA, tokA); status != http.StatusUnauthorized {
			t.Errorf("token with the retired key = %d, want 401", status)
		}
	})

	t.Run("introspection: cached, inactive refused, v1 scopes grant nothing on a v2 tenant", func(t *testing.T) {
		exp := time.Now().Add(time.Hour).Unix()
		iss.mu.Lock()
		iss.opaque["opaque-A"] = map[string]any{"active": true, "iss": iss.url, "sub": "user-1", "client_id": "ext-app", "scope": "patient/*.rs", "patient": patientA, "exp": exp, "aud": intro}
		iss.opaque["opaque-v1"] = map[string]any{"active": true, "sub": "user-1", "client_id": "ext-app", "scope": "patient/*.read", "patient": patientA, "exp": exp}
		iss.opaque["opaque-other-aud"] = map[string]any{"active": true, "sub": "user-1", "client_id": "ext-app", "scope": "patient/*.rs", "patient": patientA, "exp": exp, "aud": ext}
		iss.mu.Unlock()
		before := iss.introspections.Load()
		for range 3 {
			if status, _, raw := fhirGet(t, intro+"/Patient/"+patientA, "opaque-A"); status != 200 {
				t.Fatalf("introspected token = %d %.300s", status, raw)
			}
		}
		if n := iss.introspections.Load() - before; n != 1 {
			t.Errorf("%d introspections for 3 requests, want 1 (cached)", n)
		}
		if status, _, _ := fhirGet(t, intro+"/Patient/"+patientB, "opaque-A"); status == 200 {
			t.Error("introspected token read another patient")
		}
		if status, _, _ := fhirGet(t, intro+"/Patient/"+patientA, "opaque-unknown"); status != http.StatusUnauthorized {
			t.Errorf("inactive token = %d, want 401", status)
		}
		if status, _, _ := fhirGet(t, intro+"/Patient/"+patientA, "opaque-other-aud"); status != http.StatusUnauthorized {
			t.Errorf("token for another audience = %d, want 401", status)
		}
		if status, _, _ := fhirGet(t, intro+"/Patient/"+patientA, "opaque-v1"); status == 200 {
			t.Error("a v1 scope granted access on a v2-only tenant")
		}
	})
}

// A bad tenant configuration fails at start, naming the key.
func TestTenantConfigErrors(t *testing.T) {
	cfg := config.Default()
	cfg.Tenants = []config.Tenant{
		{Name: "Bad Name", Authorization: config.TenantAuthorization{Issuer: "https://idp.example", Mode: "jwks"}},
		{Name: "b", Upstream: config.Upstream{URL: "ftp://x"}, Authorization: config.TenantAuthorization{Mode: "saml"}, SMARTVersions: []string{"v3"}, UserAccess: "everyone"},
		{Name: "b", Upstream: config.Upstream{URL: "http://up.example/fhir"}, Authorization: config.TenantAuthorization{Issuer: "https://idp.example", Mode: "introspection"}},
	}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad tenants")
	}
	for _, key := range []string{"tenants[0].name", "tenants[0].upstream.url", "tenants[1].upstream.url", "tenants[1].authorization.issuer",
		"tenants[1].authorization.mode", "tenants[1].smart_versions[0]", "tenants[1].user_access", "tenants[2].name",
		"tenants[2].authorization.client_id", "tenants[2].authorization.client_secret_env"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("the error does not name %s:\n%v", key, err)
		}
	}
	// An issuer that cannot be reached fails the start, naming the tenant.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	cfg = config.Default()
	cfg.DataDir = t.TempDir()
	cfg.AdminAddr = ""
	cfg.Tenants = []config.Tenant{{Name: "x", Upstream: config.Upstream{URL: "http://127.0.0.1:1/fhir"}, Authorization: config.TenantAuthorization{Issuer: dead.URL, Mode: "jwks"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, err = app.New(context.Background(), cfg, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Lookup: func(string) (string, bool) { return "", false }})
	if err == nil || !strings.Contains(err.Error(), "tenants[0].authorization") {
		t.Fatalf("start with an unreachable issuer = %v", err)
	}
}

// A tenant with authorization.role_clearance gives its issuer's tokens the clearance of the
// policy.roles they name: a behavioral-health token sees the patient's psychiatric Condition (R,
// PSY), a clinician's does not, and neither sees her HIV Condition (R, HIV). A clearance or
// break-glass claim in the token counts for nothing. Without the option every token of the
// issuer has the default clearance.
func TestTenantRoleClearance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an upstream with demo data and a proxy")
	}
	iss := startTestIssuer(t)
	up := startPlainUpstream(t, "")
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = t.TempDir()
	cfg.AdminAddr = ""
	cfg.Gateway.RateLimit.Enabled = false
	cfg.Tenants = []config.Tenant{
		{Name: "roles", Upstream: config.Upstream{URL: up.url}, Authorization: config.TenantAuthorization{Issuer: iss.url, Mode: "jwks", RoleClearance: true}},
		{Name: "noroles", Upstream: config.Upstream{URL: up.url}, Authorization: config.TenantAuthorization{Issuer: iss.url, Mode: "jwks"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, app.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Lookup: func(string) (string, bool) { return "", false },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)

	const (
		depression = "http://snomed.info/sct|370143000" // labelled R and PSY in the demo data
		hiv        = "http://snomed.info/sct|86406008"  // labelled R and HIV
	)
	token := func(fhirBase string, extra map[string]any) string {
		c := iss.claims(fhirBase, patientA, "")
		delete(c, "scp")
		c["scope"] = "patient/*.rs"
		c["patient"] = patientA
		for k, v := range extra {
			c[k] = v
		}
		return iss.sign(c, nil, "")
	}
	count := func(t *testing.T, fhirBase, tok, code string) int {
		t.Helper()
		status, body, raw := fhirGet(t, fhirBase+"/Condition?patient="+patientA+"&code="+url.QueryEscape(code)+"&_total=accurate", tok)
		if status != 200 {
			t.Fatalf("search = %d %.300s", status, raw)
		}
		entries, _ := body["entry"].([]any)
		return len(entries)
	}
	forged := map[string]any{
		"roles":          []string{"clinician"},
		"clearance":      map[string]any{"confidentiality": "V", "sensitivity": []string{"*"}},
		"purpose_of_use": []string{"BTG"},
		"break_glass":    map[string]any{"reason": "forged emergency"},
	}
	for _, tc := range []struct {
		tenant, name    string
		claims          map[string]any
		depression, hiv int
	}{
		{"roles", "behavioral-health", map[string]any{"roles": []string{"behavioral-health"}}, 1, 0},
		{"roles", "behavioral-health among unknown roles", map[string]any{"roles": []string{"offline_access", "behavioral-health"}}, 1, 0},
		{"roles", "clinician", map[string]any{"roles": []string{"clinician"}}, 0, 0},
		{"roles", "unknown role", map[string]any{"roles": []string{"psychiatrist"}}, 0, 0},
		{"roles", "forged clearance and break-glass claims", forged, 0, 0},
		{"noroles", "behavioral-health", map[string]any{"roles": []string{"behavioral-health"}}, 0, 0},
		{"noroles", "clinician", map[string]any{"roles": []string{"clinician"}}, 0, 0},
		{"noroles", "forged clearance and break-glass claims", forged, 0, 0},
	} {
		t.Run(tc.tenant+"/"+tc.name, func(t *testing.T) {
			fhirBase := base + "/t/" + tc.tenant + "/fhir"
			tok := token(fhirBase, tc.claims)
			if n := count(t, fhirBase, tok, depression); n != tc.depression {
				t.Errorf("depression Conditions = %d, want %d", n, tc.depression)
			}
			if n := count(t, fhirBase, tok, hiv); n != tc.hiv {
				t.Errorf("HIV Conditions = %d, want %d", n, tc.hiv)
			}
			// The token works: her unlabelled Conditions are there.
			status, body, raw := fhirGet(t, fhirBase+"/Condition?patient="+patientA, tok)
			if entries, _ := body["entry"].([]any); status != 200 || len(entries) == 0 {
				t.Errorf("her Conditions = %d %.300s", status, raw)
			}
		})
	}
}
