package authserver_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
)

// codeFor runs a standalone patient authorization and returns the code.
func codeFor(t *testing.T, e *env, scope string) (code, verifier, redirect string) {
	t.Helper()
	verifier, challenge := pkcePair()
	redirect = e.appURL + "/callback"
	loc, p := e.authorize(e.browser(), e.authParams("public-app", redirect, scope, challenge), flowOpts{user: "alice", pw: alicePW})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code: %v %d %s", loc, p.status, p.body)
	}
	return loc.Query().Get("code"), verifier, redirect
}

func TestCodeReplayRevokesTokens(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	st, body := exchange(t, e, code, verifier, redirect, nil)
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	st, again := exchange(t, e, code, verifier, redirect, nil)
	if st != 400 || again["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", st, again)
	}
	if introspect(t, e, body["access_token"].(string))["active"] != false {
		t.Error("access token from a replayed code is still active")
	}
	st, r, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}, "client_id": {"public-app"}}, "", "")
	if st != 400 || r["error"] != "invalid_grant" {
		t.Errorf("refresh token from a replayed code: %d %v", st, r)
	}
}

func TestTokenEndpointNegatives(t *testing.T) {
	e := newEnv(t)
	scope := "launch/patient offline_access patient/Patient.rs"
	cases := []struct {
		name   string
		mod    func(code, verifier, redirect string) url.Values
		status int
		err    string
	}{
		{"wrong verifier", func(c, v, r string) url.Values {
			w, _ := pkcePair()
			return url.Values{"code_verifier": {w}}
		}, 400, "invalid_grant"},
		{"missing verifier", func(c, v, r string) url.Values { return url.Values{"code_verifier": {""}} }, 400, ""},
		{"redirect mismatch", func(c, v, r string) url.Values { return url.Values{"redirect_uri": {r + "/x"}} }, 400, "invalid_grant"},
		{"bogus code", func(c, v, r string) url.Values { return url.Values{"code": {"BAD_CODE"}} }, 400, "invalid_grant"},
		{"unknown client", func(c, v, r string) url.Values { return url.Values{"client_id": {"BAD_CLIENT_ID"}} }, 401, "invalid_client"},
		{"other client", func(c, v, r string) url.Values {
			return url.Values{"client_id": {"post-app"}, "client_secret": {secret}}
		}, 400, "invalid_grant"},
		{"unsupported grant", func(c, v, r string) url.Values { return url.Values{"grant_type": {"not_a_grant_type"}} }, 400, "unsupported_grant_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, verifier, redirect := codeFor(t, e, scope)
			st, body := exchange(t, e, code, verifier, redirect, tc.mod(code, verifier, redirect))
			if st != tc.status || (tc.err != "" && body["error"] != tc.err) {
				t.Fatalf("%d %v", st, body)
			}
			if body["access_token"] != nil {
				t.Fatal("token issued")
			}
		})
	}
	t.Run("expired code", func(t *testing.T) {
		code, verifier, redirect := codeFor(t, e, scope)
		e.clock.Advance(2 * time.Minute)
		st, body := exchange(t, e, code, verifier, redirect, nil)
		if st != 400 || body["error"] != "invalid_grant" {
			t.Fatalf("%d %v", st, body)
		}
	})
	t.Run("bad secret", func(t *testing.T) {
		st, body, h := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {"x"}}, "conf-app", "wrong-secret-wrong-secret")
		if st != 401 || body["error"] != "invalid_client" || h.Get("WWW-Authenticate") == "" {
			t.Fatalf("%d %v %v", st, body, h)
		}
		st, body, _ = postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {"x"}, "client_id": {"post-app"}, "client_secret": {"nope-nope-nope-nope"}}, "", "")
		if st != 401 || body["error"] != "invalid_client" {
			t.Fatalf("post: %d %v", st, body)
		}
		// A confidential client cannot pass as public.
		st, body, _ = postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {"x"}, "client_id": {"conf-app"}}, "", "")
		if st != 401 || body["error"] != "invalid_client" {
			t.Fatalf("no secret: %d %v", st, body)
		}
	})
	t.Run("not form encoded", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.issuer+"/auth/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 400 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%v %v", err, resp.Status)
		}
		resp, _ = http.Get(e.issuer + "/auth/token")
		if resp.StatusCode != 400 {
			t.Fatalf("GET: %v", resp.Status)
		}
	})
}

func TestRefreshNegatives(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs patient/Observation.rs")
	_, tok := exchange(t, e, code, verifier, redirect, nil)
	rt1 := tok["refresh_token"].(string)
	refresh := func(rt string, scope string) (int, map[string]any) {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"public-app"}}
		if scope != "" {
			f.Set("scope", scope)
		}
		st, b, _ := postForm(t, e.issuer+"/auth/token", f, "", "")
		return st, b
	}
	// Escalation is refused, and does not consume the token.
	if st, b := refresh(rt1, "launch/patient offline_access patient/Patient.rs patient/Observation.rs patient/Condition.rs"); st != 400 || b["error"] != "invalid_scope" {
		t.Fatalf("escalation: %d %v", st, b)
	}
	if st, b := refresh(rt1, "offline_access patient/*.rs"); st != 400 || b["error"] != "invalid_scope" {
		t.Fatalf("wildcard escalation: %d %v", st, b)
	}
	// Narrowing is fine.
	st, b := refresh(rt1, "offline_access patient/Patient.r")
	if st != 200 || !sameSet(b["scope"].(string), "offline_access patient/Patient.r") {
		t.Fatalf("narrowing: %d %v", st, b)
	}
	rt2 := b["refresh_token"].(string)
	at2 := b["access_token"].(string)
	// Wider than the narrowed grant is now an escalation.
	if st, b := refresh(rt2, "offline_access patient/Patient.rs"); st != 400 || b["error"] != "invalid_scope" {
		t.Fatalf("re-widening: %d %v", st, b)
	}
	// Reuse of the rotated token revokes the family.
	if st, b := refresh(rt1, ""); st != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, b)
	}
	if st, b := refresh(rt2, ""); st != 400 {
		t.Fatalf("family still alive after reuse: %d %v", st, b)
	}
	if introspect(t, e, at2)["active"] != false {
		t.Error("access token of the family still active")
	}
	// Random refresh token.
	if st, b := refresh("bm90LWEtdG9rZW4", ""); st != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("random: %d %v", st, b)
	}
	// Refresh tokens are stored only as hashes: the raw value is nowhere in the database.
	var n int
	if err := e.db.ReadDB().QueryRow(`SELECT count(*) FROM oauth_requests WHERE data LIKE '%' || $1 || '%' OR signature = $1`, rt2).Scan(&n); err != nil || n != 0 {
		t.Errorf("refresh token found in store: %d %v", n, err)
	}
}

func TestAuthorizeNegatives(t *testing.T) {
	e := newEnv(t)
	redirect := e.appURL + "/callback"
	_, challenge := pkcePair()
	base := func() url.Values {
		return e.authParams("public-app", redirect, "launch/patient patient/Patient.rs", challenge)
	}
	// Errors shown as a page, never redirected.
	page := []struct {
		name string
		mod  func(url.Values)
	}{
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope") }},
		{"missing client", func(v url.Values) { v.Del("client_id") }},
		{"redirect mismatch", func(v url.Values) { v.Set("redirect_uri", redirect+"/evil") }},
		{"redirect prefix", func(v url.Values) { v.Set("redirect_uri", e.appURL+"/callbackx") }},
		{"redirect case", func(v url.Values) { v.Set("redirect_uri", e.appURL+"/Callback") }},
		{"missing redirect", func(v url.Values) { v.Del("redirect_uri") }},
	}
	for _, tc := range page {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.mod(v)
			p := e.browser().get(e.issuer + "/auth/authorize?" + v.Encode())
			if p.status != 400 || p.header.Get("Location") != "" || !strings.Contains(p.header.Get("Content-Type"), "text/html") {
				t.Fatalf("%d %v", p.status, p.header)
			}
		})
	}
	// Errors redirected to the app with state, never with a code.
	redir := []struct {
		name, err string
		mod       func(url.Values)
	}{
		{"wrong aud", "invalid_request", func(v url.Values) { v.Set("aud", "https://inferno.healthit.gov/invalid_aud") }},
		{"aud with slash", "invalid_request", func(v url.Values) { v.Set("aud", e.fhirBase+"/") }},
		{"missing aud", "invalid_request", func(v url.Values) { v.Del("aud") }},
		{"plain pkce", "invalid_request", func(v url.Values) { v.Set("code_challenge_method", "plain") }},
		{"pkce no method", "invalid_request", func(v url.Values) { v.Del("code_challenge_method") }},
		{"no pkce", "invalid_request", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }},
		{"response type", "unsupported_response_type", func(v url.Values) { v.Set("response_type", "token") }},
		{"no state", "invalid_request", func(v url.Values) { v.Del("state") }},
		{"no allowed scope", "invalid_scope", func(v url.Values) { v.Set("scope", "system/*.rs") }},
		{"repeated param", "invalid_request", func(v url.Values) { v.Add("scope", "openid") }},
	}
	for _, tc := range redir {
		t.Run(tc.name, func(t *testing.T) {
			v := base()
			tc.mod(v)
			p := e.browser().get(e.issuer + "/auth/authorize?" + v.Encode())
			loc, err := url.Parse(p.header.Get("Location"))
			if p.status != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), redirect) {
				t.Fatalf("%d %v %s", p.status, p.header, p.body)
			}
			if loc.Query().Get("error") != tc.err || loc.Query().Get("code") != "" || loc.Query().Get("state") != v.Get("state") {
				t.Fatalf("redirect %s", loc)
			}
		})
	}
}

func TestInteractionProtections(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkcePair()
	params := e.authParams("public-app", e.appURL+"/callback", "launch/patient patient/Patient.rs", challenge)
	b := e.browser()
	_, p := e.authorize(b, params, flowOpts{stopAt: "login"})
	f := p.form(t, "/login")
	// Missing CSRF token.
	bad := url.Values{"username": {"alice"}, "password": {alicePW}}
	if r := b.post(f.action, bad); r.status != http.StatusForbidden {
		t.Errorf("no csrf: %d", r.status)
	}
	// Another browser cannot continue the interaction even with the token.
	f.fields.Set("username", "alice")
	f.fields.Set("password", alicePW)
	if r := e.browser().post(f.action, f.fields); r.status != http.StatusBadRequest {
		t.Errorf("other browser: %d", r.status)
	}
	// Wrong password, then throttling per account.
	f.fields.Set("password", "wrong")
	for i := 0; i < 5; i++ {
		if r := b.post(f.action, f.fields); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	f.fields.Set("password", alicePW)
	if r := b.post(f.action, f.fields); r.status != http.StatusTooManyRequests {
		t.Errorf("throttle: %d", r.status)
	}
	e.clock.Advance(16 * time.Minute)
	// The interaction itself expired meanwhile; a fresh one logs in fine.
	_, challenge = pkcePair()
	params.Set("code_challenge", challenge)
	loc, p := e.authorize(e.browser(), params, flowOpts{user: "alice", pw: alicePW})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Errorf("login after window: %v %d", loc, p.status)
	}
}

// TestClientSecretPost: a symmetric client authenticating in the body completes the flow.
func TestClientSecretPost(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/cb"
	loc, p := e.authorize(e.browser(), e.authParams("post-app", redirect, "openid fhirUser launch/patient offline_access patient/*.rs", challenge), flowOpts{user: "alice", pw: alicePW})
	if loc == nil {
		t.Fatalf("%d %s", p.status, p.body)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {"post-app"}, "client_secret": {secret}}
	st, body, _ := postForm(t, e.issuer+"/auth/token", form, "", "")
	if st != 200 || body["id_token"] == nil || body["patient"] != "alice" {
		t.Fatalf("%d %v", st, body)
	}
	// The same client may not switch to Basic.
	st, body, _ = postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}}, "post-app", secret)
	if st != 401 || body["error"] != "invalid_client" {
		t.Fatalf("basic for a post client: %d %v", st, body)
	}
}

// TestGrantsPage: the user sees the app's access on the management page and revokes it there.
func TestGrantsPage(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	_, tok := exchange(t, e, code, verifier, redirect, nil)
	b := e.browser()
	p := b.get(e.issuer + "/auth/grants")
	f := p.form(t, "/auth/grants/login")
	f.fields.Set("username", "alice")
	f.fields.Set("password", alicePW)
	p = b.post(f.action, f.fields)
	if p.status != 200 || !strings.Contains(p.body, "public-app") {
		t.Fatalf("%d %s", p.status, p.body)
	}
	f = p.form(t, "/auth/grants/revoke")
	// Without the CSRF token nothing happens.
	if r := b.post(f.action, url.Values{"grant": f.fields["grant"]}); r.status != http.StatusForbidden {
		t.Fatalf("revoke without csrf: %d", r.status)
	}
	// Another user cannot revoke it.
	other := e.browser()
	op := other.get(e.issuer + "/auth/grants")
	of := op.form(t, "/auth/grants/login")
	of.fields.Set("username", "drsmith")
	of.fields.Set("password", drPW)
	op = other.post(of.action, of.fields)
	if strings.Contains(op.body, "public-app") {
		t.Fatal("another user's grant listed")
	}
	// Their session cannot use alice's form either (the CSRF token is bound to alice's session).
	if r := other.post(f.action, f.fields); r.status != http.StatusForbidden {
		t.Fatalf("revoke with another session: %d", r.status)
	}
	p = b.post(f.action, f.fields)
	if p.status != 200 || strings.Contains(p.body, "Revoke access") {
		t.Fatalf("after revoke: %d %s", p.status, p.body)
	}
	if introspect(t, e, tok["access_token"].(string))["active"] != false {
		t.Error("access token still active")
	}
	st, body, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"public-app"}}, "", "")
	if st != 400 {
		t.Errorf("refresh after user revocation: %d %v", st, body)
	}
}

// TestConfigSync: a client or user removed from the configuration is removed from the store at the
// next load, with its tokens; admin-made entries stay.
func TestConfigSync(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	_, tok := exchange(t, e, code, verifier, redirect, nil)
	if err := e.srv.Clients().Put(context.Background(), authserver.ClientMetadata{ClientID: "admin-made", RedirectURIs: []string{"https://x.example/cb"}, TokenEndpointAuthMethod: "none"}, "", "admin"); err != nil {
		t.Fatal(err)
	}
	keep := []config.Client{{ClientID: "conf-app", RedirectURIs: []string{e.appURL + "/cb?x=1"}, TokenEndpointAuthMethod: "client_secret_basic",
		ClientSecret: secret, GrantTypes: []string{"authorization_code"}, Scope: "openid"}}
	if err := e.srv.LoadConfig(context.Background(), keep, []config.User{{Username: "alice", Password: alicePW, FHIRUser: "Patient/alice", Roles: []string{"patient"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Clients().Get(context.Background(), "public-app"); err == nil {
		t.Error("removed config client still registered")
	}
	if _, err := e.srv.Clients().Get(context.Background(), "admin-made"); err != nil {
		t.Error("admin-made client removed")
	}
	if _, err := e.srv.Users().Get(context.Background(), "drsmith"); err == nil {
		t.Error("removed config user still present")
	}
	if introspect(t, e, tok["access_token"].(string))["active"] != false {
		t.Error("token of a removed client still active")
	}
	if r, _ := e.srv.Revoked(context.Background(), checkAccessToken(t, e, tok["access_token"].(string)).ID); !r {
		t.Error("token of a removed client not on the revocation list")
	}
}

// TestPatientUserOtherPatientLaunch: a patient user cannot complete an EHR launch for another
// patient, nor one bound to another user.
func TestPatientUserOtherPatientLaunch(t *testing.T) {
	e := newEnv(t)
	for _, req := range []authserver.LaunchRequest{
		{ClientID: "conf-app", Patient: "bob"},
		{ClientID: "conf-app", Patient: "alice", User: "drsmith"},
	} {
		l, err := e.srv.CreateLaunch(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		_, challenge := pkcePair()
		params := e.authParams("conf-app", e.appURL+"/cb?x=1", "launch openid patient/Patient.rs", challenge)
		params.Set("launch", l.Launch)
		loc, p := e.authorize(e.browser(), params, flowOpts{user: "alice", pw: alicePW})
		if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
			t.Fatalf("%+v: %v %d", req, loc, p.status)
		}
	}
}

// TestPromptLoginAndMaxAge: prompt=login and an exceeded max_age ask for the password again even
// with a live login session; otherwise the session answers.
func TestPromptLoginAndMaxAge(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	_, challenge := pkcePair()
	params := e.authParams("public-app", e.appURL+"/callback", "openid launch/patient patient/Patient.rs", challenge)
	if loc, _ := e.authorize(b, params, flowOpts{user: "alice", pw: alicePW}); loc == nil || loc.Query().Get("code") == "" {
		t.Fatal("first login")
	}
	// Single sign-on: no login page.
	if _, p := e.authorize(b, params, flowOpts{stopAt: "login"}); strings.Contains(p.body, "/login") {
		t.Fatal("login page despite a live session")
	}
	params.Set("prompt", "login")
	if _, p := e.authorize(b, params, flowOpts{stopAt: "login"}); !strings.Contains(p.body, "/login") {
		t.Fatal("prompt=login did not ask for the password")
	}
	loc, _ := e.authorize(b, params, flowOpts{user: "alice", pw: alicePW})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("prompt=login after login: %v", loc)
	}
	params.Del("prompt")
	params.Set("max_age", "3600")
	if _, p := e.authorize(b, params, flowOpts{stopAt: "login"}); strings.Contains(p.body, "/login") {
		t.Fatal("max_age within the session asked for the password")
	}
	params.Set("max_age", "0")
	if _, p := e.authorize(b, params, flowOpts{stopAt: "login"}); !strings.Contains(p.body, "/login") {
		t.Fatal("max_age exceeded did not ask for the password")
	}
	if loc, _ := e.authorize(b, params, flowOpts{user: "alice", pw: alicePW}); loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("max_age after login: %v", loc)
	}
}
