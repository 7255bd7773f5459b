package authserver_test

// Regression tests from the adversarial review of the authorization server (2026-11-23). Each
// test mounts an attack black-box over HTTP and proves it fails.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
)

func registerClient(t *testing.T, e *env, initialToken, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/auth/register", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if initialToken != "" {
		req.Header.Set("Authorization", "Bearer "+initialToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// A self-registered client must not pre-authorize itself for Backend Services: with
// client_credentials and system/*.rs it would read every patient's data with no user involved.
func TestDynamicRegistrationCannotSelfGrantBackendAccess(t *testing.T) {
	const iat = "initial-token-0123456789"
	e := newEnv(t, func(c *authserver.Config) {
		c.Auth.Registration.Enabled = true
		c.InitialAccessToken = iat
	})
	es := newES384(t)
	jwks := string(es.jwks())
	for name, body := range map[string]string{
		"client_credentials": `{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks":` + jwks + `,"scope":"system/*.rs"}`,
		"system scope on a code client": `{"redirect_uris":["` + e.appURL + `/dyn"],"token_endpoint_auth_method":"private_key_jwt","jwks":` + jwks +
			`,"grant_types":["authorization_code"],"scope":"openid system/*.cruds"}`,
		"v1 system scope": `{"token_endpoint_auth_method":"client_secret_basic","grant_types":["client_credentials"],"scope":"system/*.read"}`,
	} {
		st, m := registerClient(t, e, iat, body)
		if st != 400 || m["error"] != "invalid_client_metadata" {
			t.Errorf("%s: registration answered %d %v", name, st, m)
		}
		if cid, _ := m["client_id"].(string); cid != "" {
			// Had it been registered, the attack is a single token request.
			assertion := es.assertion(t, assertionOpts{iss: cid, aud: e.issuer + "/auth/token", exp: time.Now().Add(4 * time.Minute)})
			if st, tok, _ := ccRequest(t, e, assertion, "system/*.rs"); st == 200 {
				t.Errorf("%s: dynamically registered client got a system token: %v", name, tok)
			}
		}
	}
}

// Dynamic registration refuses redirect URIs a browser would execute or that leak codes over
// plain http, and JWKS URLs that would make the server fetch from its own network (SSRF).
func TestDynamicRegistrationURLs(t *testing.T) {
	e := newEnv(t, func(c *authserver.Config) { c.Auth.Registration.Enabled = true })
	for _, ru := range []string{"javascript:alert(document.cookie)", "data:text/html,<script>x</script>", "JavaScript://%0aalert(1)",
		"vbscript:msgbox", "file:///etc/passwd", "http://attacker.example/cb"} {
		b, _ := json.Marshal(map[string]any{"redirect_uris": []string{ru}})
		if st, m := registerClient(t, e, "", string(b)); st != 400 || m["error"] != "invalid_redirect_uri" {
			t.Errorf("redirect_uri %q: %d %v", ru, st, m)
		}
	}
	for _, ok := range []string{"https://app.example/cb", "http://127.0.0.1:8080/cb", "com.example.app:/cb"} {
		b, _ := json.Marshal(map[string]any{"redirect_uris": []string{ok}})
		if st, m := registerClient(t, e, "", string(b)); st != 201 {
			t.Errorf("redirect_uri %q refused: %d %v", ok, st, m)
		}
	}
	for _, ju := range []string{"https://127.0.0.1/jwks", "https://169.254.169.254/latest/meta-data", "https://10.1.2.3/jwks",
		"https://192.168.0.1/jwks", "https://[::1]/jwks", "https://[fd00::1]/jwks", "https://100.64.0.1/jwks", "https://0.0.0.0/jwks",
		"https://localhost/jwks", "https://metadata/jwks", "http://127.0.0.1:9/jwks", "http://jwks.example/keys"} {
		b, _ := json.Marshal(map[string]any{"token_endpoint_auth_method": "private_key_jwt", "grant_types": []string{"authorization_code"},
			"redirect_uris": []string{"https://app.example/cb"}, "jwks_uri": ju})
		if st, m := registerClient(t, e, "", string(b)); st != 400 || m["error"] != "invalid_client_metadata" {
			t.Errorf("jwks_uri %q: %d %v", ju, st, m)
		}
	}
	// The admin path refuses executable redirect schemes too.
	m := authserver.ClientMetadata{ClientID: "js-app", TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code"},
		RedirectURIs: []string{"javascript:alert(1)"}}
	if err := e.srv.Clients().Put(context.Background(), m, "", "admin"); err == nil {
		t.Error("admin registration accepted a javascript: redirect_uri")
	}
}

// The client JWKS fetch does not follow redirects: a registered https URL that redirects (to an
// internal address, plain http, or an attacker's keys) yields no keys.
func TestJWKSRedirectNotFollowed(t *testing.T) {
	e := newEnv(t)
	rs := newRS384(t)
	var served int
	var mu sync.Mutex
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(rs.jwks())
	}))
	t.Cleanup(target.Close)
	redirector := httptest.NewServer(http.RedirectHandler(target.URL+"/jwks.json", http.StatusFound))
	t.Cleanup(redirector.Close)
	m, sec, err := authserver.MetadataFromConfig(config.Client{ClientID: "bulk-redir", TokenEndpointAuthMethod: "private_key_jwt",
		GrantTypes: []string{"client_credentials"}, JWKSURI: redirector.URL + "/jwks.json", Scope: "system/*.rs"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Clients().Put(context.Background(), m, sec, "admin"); err != nil {
		t.Fatal(err)
	}
	assertion := rs.assertion(t, assertionOpts{iss: "bulk-redir", aud: e.issuer + "/auth/token", exp: time.Now().Add(4 * time.Minute)})
	st, body, _ := ccRequest(t, e, assertion, "system/*.rs")
	if st != 401 || body["error"] != "invalid_client" {
		t.Errorf("assertion verified with keys from a redirect: %d %v", st, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if served != 0 {
		t.Errorf("the redirect target was fetched %d times", served)
	}
}

// Parallel password guesses cannot overrun the per-account limit: checking the limit and counting
// the attempt are one step, so a burst does not all pass the check before any failure is counted.
func TestLoginThrottleParallelBurst(t *testing.T) {
	const limit = 3
	e := newEnv(t, func(c *authserver.Config) {
		c.Auth.Login = config.LoginThrottle{MaxFailuresPerAccount: limit, MaxFailuresPerIP: 1000, Window: 15 * time.Minute}
	})
	b := e.browser()
	f := b.get(e.issuer+"/ehr").form(t, "/ehr/login")
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fields := url.Values{"csrf": {f.fields.Get("csrf")}, "username": {"drsmith"}, "password": {"guess-" + string(rune('a'+i))}}
			req, _ := http.NewRequest(http.MethodPost, f.action, strings.NewReader(fields.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[http.StatusUnauthorized] > limit {
		t.Errorf("%d password checks for an account limited to %d (statuses %v)", statuses[http.StatusUnauthorized], limit, statuses)
	}
	// The right password is refused too while the account is locked (no oracle).
	p := b.post(f.action, url.Values{"csrf": {f.fields.Get("csrf")}, "username": {"drsmith"}, "password": {drPW}})
	if p.status != http.StatusTooManyRequests {
		t.Errorf("correct password during lockout: %d", p.status)
	}
	// A success gives back the IP's count of its own attempt; other accounts are unaffected.
	f2 := e.browser()
	lf := f2.get(e.issuer+"/ehr").form(t, "/ehr/login")
	lf.fields.Set("username", "alice")
	lf.fields.Set("password", alicePW)
	if p := f2.post(lf.action, lf.fields); p.status != http.StatusOK {
		t.Errorf("other account locked out: %d", p.status)
	}
}

// Signing out ends online_access grants made in that login session (their refresh tokens stop
// working and their access tokens are revoked); offline_access grants survive.
func TestLogoutEndsOnlineAccess(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	redirect := e.appURL + "/callback"
	grant := func(scope string) map[string]any {
		verifier, challenge := pkcePair()
		loc, p := e.authorize(b, e.authParams("public-app", redirect, scope, challenge), flowOpts{user: "alice", pw: alicePW})
		if loc == nil || loc.Query().Get("code") == "" {
			t.Fatalf("no code: %d %s", p.status, p.body)
		}
		st, tok := exchange(t, e, loc.Query().Get("code"), verifier, redirect, nil)
		if st != 200 || tok["refresh_token"] == nil {
			t.Fatalf("%d %v", st, tok)
		}
		return tok
	}
	online := grant("launch/patient online_access patient/Patient.rs")
	offline := grant("launch/patient offline_access patient/Patient.rs")
	refresh := func(rt string) (int, map[string]any) {
		st, m, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"public-app"}}, "", "")
		return st, m
	}
	// Sign out through the form the grants page offers.
	gp := b.get(e.issuer + "/auth/grants")
	lo := gp.form(t, "/auth/logout")
	if p := b.post(lo.action, lo.fields); p.status != http.StatusOK {
		t.Fatalf("logout: %d %s", p.status, p.body)
	}
	if st, m := refresh(online["refresh_token"].(string)); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("online_access refresh after logout: %d %v", st, m)
	}
	if introspect(t, e, online["access_token"].(string))["active"] != false {
		t.Error("online_access access token still active after logout")
	}
	if st, m := refresh(offline["refresh_token"].(string)); st != 200 {
		t.Errorf("offline_access refresh after logout: %d %v", st, m)
	}
	// A forged logout (no CSRF token) does not sign anyone out.
	b2 := e.browser()
	online2 := func() map[string]any {
		verifier, challenge := pkcePair()
		loc, _ := e.authorize(b2, e.authParams("public-app", redirect, "launch/patient online_access patient/Patient.rs", challenge), flowOpts{user: "alice", pw: alicePW})
		_, tok := exchange(t, e, loc.Query().Get("code"), verifier, redirect, nil)
		return tok
	}()
	if p := b2.post(e.issuer+"/auth/logout", url.Values{"csrf": {"forged"}}); p.status != http.StatusForbidden {
		t.Errorf("logout without CSRF token: %d", p.status)
	}
	if st, m := refresh(online2["refresh_token"].(string)); st != 200 {
		t.Errorf("forged logout ended a grant: %d %v", st, m)
	}
}

// Only clinicians may open another patient's record: a user with the patient role whose
// fhir_user is not a Patient (a RelatedPerson, say) or a user without a role cannot complete an
// EHR launch for some patient, even one not bound to a user.
func TestNonClinicianCannotTakeOtherPatientLaunch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.srv.Users().Put(ctx, authserver.UserSpec{Username: "proxy", Password: "proxy-password-1", FHIRUser: "RelatedPerson/r1", Roles: []string{"patient"}}, "admin"); err != nil {
		t.Fatal(err)
	}
	for _, who := range []struct{ user, pw string }{{"proxy", "proxy-password-1"}, {"norole", "norole-password"}} {
		l, err := e.srv.CreateLaunch(ctx, authserver.LaunchRequest{ClientID: "conf-app", Patient: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		_, challenge := pkcePair()
		params := e.authParams("conf-app", e.appURL+"/cb?x=1", "launch openid patient/Patient.rs", challenge)
		params.Set("launch", l.Launch)
		loc, p := e.authorize(e.browser(), params, flowOpts{user: who.user, pw: who.pw})
		if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" {
			t.Errorf("%s completed a launch for patient bob: %v %d", who.user, loc, p.status)
		}
	}
	// A clinician still can.
	l, err := e.srv.CreateLaunch(ctx, authserver.LaunchRequest{ClientID: "conf-app", Patient: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	_, challenge := pkcePair()
	params := e.authParams("conf-app", e.appURL+"/cb?x=1", "launch openid patient/Patient.rs", challenge)
	params.Set("launch", l.Launch)
	if loc, p := e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW}); loc == nil || loc.Query().Get("code") == "" {
		t.Errorf("clinician launch failed: %v %d", loc, p.status)
	}
}

// A patient user's role ceiling holds against a tampered consent form: no user/ or system/
// scope, nothing beyond read/search, and the patient in context is their own.
func TestPatientRoleCeilingAgainstTamperedConsent(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/callback"
	loc, p := e.authorize(e.browser(), e.authParams("public-app", redirect, "launch/patient user/*.rs patient/*.cruds openid fhirUser", challenge),
		flowOpts{user: "alice", pw: alicePW, consent: func(f *form) {
			f.fields["scope"] = append(f.fields["scope"], "user/*.rs", "user/Patient.rs", "patient/*.cruds", "patient/*.write", "system/*.rs")
			f.fields.Set("patient", "bob")
		}})
	if loc == nil {
		t.Fatalf("%d %s", p.status, p.body)
	}
	st, tok := exchange(t, e, loc.Query().Get("code"), verifier, redirect, nil)
	if st != 200 {
		t.Fatalf("%d %v", st, tok)
	}
	// The patient role's ceiling: read their record, manage their own Consents.
	if !sameSet(tok["scope"].(string), "launch/patient patient/*.rs patient/Consent.cruds openid fhirUser") || tok["patient"] != "alice" {
		t.Errorf("granted %q for patient %v", tok["scope"], tok["patient"])
	}
}

// PKCE at the token endpoint: the plain downgrade (verifier = challenge), verifiers outside RFC
// 7636's 43-128 characters of [A-Za-z0-9-._~] all fail with 400 and never yield a token.
func TestPKCEVerifierRules(t *testing.T) {
	e := newEnv(t)
	redirect := e.appURL + "/callback"
	for name, bad := range map[string]func(challenge string) string{
		"plain downgrade": func(c string) string { return c },
		"too short":       func(string) string { return strings.Repeat("a", 42) },
		"too long":        func(string) string { return strings.Repeat("a", 129) },
		"bad charset":     func(string) string { return strings.Repeat("a", 42) + "+" },
		"space":           func(string) string { return strings.Repeat("a", 42) + " " },
	} {
		verifier, challenge := pkcePair()
		loc, p := e.authorize(e.browser(), e.authParams("public-app", redirect, "launch/patient patient/Patient.rs", challenge), flowOpts{user: "alice", pw: alicePW})
		if loc == nil {
			t.Fatalf("%d %s", p.status, p.body)
		}
		code := loc.Query().Get("code")
		st, body := exchange(t, e, code, verifier, redirect, url.Values{"code_verifier": {bad(challenge)}})
		if st != 400 || body["access_token"] != nil {
			t.Errorf("%s: %d %v", name, st, body)
		}
	}
}
