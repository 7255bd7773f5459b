package adminapi_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/authserver/password"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

const token = "admin-token-0123456789abcdef"

func setup(t *testing.T, mutate ...func(*authserver.Config)) (*httptest.Server, *authserver.Server) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "a.db"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek := make([]byte, 32)
	rand.Read(kek)
	km, err := keys.Open(ctx, keys.Options{Store: db, KEK: kek, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := authserver.Config{Issuer: "https://fhirgate.example", FHIRBase: "https://fhirgate.example/fhir", Store: db, Keys: km,
		PasswordParams: password.Params{Memory: 64, Time: 1, Threads: 1}, Logger: log}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := authserver.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminapi.New(adminapi.Config{Token: "short", Server: srv}); err == nil {
		t.Fatal("short token accepted")
	}
	api, err := adminapi.New(adminapi.Config{Token: token, Server: srv, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts, srv
}

func call(t *testing.T, ts *httptest.Server, tok, method, path, body string) (int, map[string]any, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

func TestAdminAPI(t *testing.T) {
	ts, srv := setup(t)
	for _, tok := range []string{"", "wrong", token + "x"} {
		if st, _, _ := call(t, ts, tok, "GET", "/admin/clients", ""); st != 401 {
			t.Errorf("token %q: %d", tok, st)
		}
	}
	st, m, _ := call(t, ts, token, "POST", "/admin/clients", `{"client_id":"app","redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code","refresh_token"],"scope":"openid launch patient/*.rs","launch_url":"https://app.example/launch"}`)
	if st != 201 || len(m["client_secret"].(string)) < 32 {
		t.Fatalf("create client: %d %v", st, m)
	}
	st, _, raw := call(t, ts, token, "GET", "/admin/clients/app", "")
	if st != 200 || strings.Contains(string(raw), m["client_secret"].(string)) {
		t.Fatalf("get client: %d %s", st, raw)
	}
	if st, m, _ := call(t, ts, token, "POST", "/admin/clients", `{"client_id":"bad","redirect_uris":["https://x/cb#f"],"token_endpoint_auth_method":"none"}`); st != 400 || m["error"] != "invalid_redirect_uri" {
		t.Errorf("bad client: %d %v", st, m)
	}
	if st, _, _ := call(t, ts, token, "POST", "/admin/clients", `{"client_id":"x","unknown_field":1}`); st != 400 {
		t.Errorf("unknown field: %d", st)
	}
	st, m, _ = call(t, ts, token, "POST", "/admin/users", `{"username":"drsmith","password":"long-enough-pw","fhir_user":"Practitioner/smith","roles":["clinician"]}`)
	if st != 201 || m["username"] != "drsmith" || m["password_hash"] != nil {
		t.Fatalf("create user: %d %v", st, m)
	}
	if st, _, _ := call(t, ts, token, "POST", "/admin/users", `{"username":"x","password":"short"}`); st != 400 {
		t.Errorf("short password: %d", st)
	}
	u, err := srv.Users().Authenticate(context.Background(), "drsmith", "long-enough-pw")
	if err != nil || u.FHIRUser != "Practitioner/smith" {
		t.Fatalf("authenticate: %v", err)
	}
	st, m, _ = call(t, ts, token, "POST", "/admin/launch", `{"client_id":"app","patient":"p1","encounter":"e1"}`)
	if st != 201 || m["launch"] == nil || !strings.HasPrefix(m["launch_url"].(string), "https://app.example/launch?") {
		t.Fatalf("launch: %d %v", st, m)
	}
	if st, _, _ := call(t, ts, token, "POST", "/admin/launch", `{"client_id":"nope","patient":"p1"}`); st != 404 {
		t.Errorf("launch for unknown client: %d", st)
	}
	if st, _, _ := call(t, ts, token, "POST", "/admin/launch", `{"client_id":"app","patient":"../x"}`); st != 400 {
		t.Errorf("launch with bad patient id: %d", st)
	}
	_, _, raw = call(t, ts, token, "GET", "/admin/keys", "")
	before := strings.Count(string(raw), `"kid"`)
	if st, m, _ := call(t, ts, token, "POST", "/admin/keys/rotate", `{"purpose":"access"}`); st != 200 || m["kid"] == nil {
		t.Errorf("rotate: %d %v", st, m)
	}
	_, _, raw = call(t, ts, token, "GET", "/admin/keys", "")
	if after := strings.Count(string(raw), `"kid"`); after != before+1 {
		t.Errorf("keys %d -> %d", before, after)
	}
	if st, _, _ := call(t, ts, token, "DELETE", "/admin/clients/app", ""); st != 204 {
		t.Errorf("delete client: %d", st)
	}
	if st, _, _ := call(t, ts, token, "GET", "/admin/clients/app", ""); st != 404 {
		t.Errorf("deleted client: %d", st)
	}
	if st, _, _ := call(t, ts, token, "DELETE", "/admin/users/drsmith", ""); st != 204 {
		t.Errorf("delete user: %d", st)
	}
	if st, _, _ := call(t, ts, token, "DELETE", "/admin/users/drsmith", ""); st != 404 {
		t.Errorf("delete user twice: %d", st)
	}
}
