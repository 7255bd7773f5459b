package authserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	st, doc, h := getJSON(t, e.fhirBase+"/.well-known/smart-configuration")
	if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("smart-configuration: %d %v", st, h)
	}
	for _, f := range []string{"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint", "revocation_endpoint"} {
		if s, _ := doc[f].(string); !strings.HasPrefix(s, e.issuer) {
			t.Errorf("%s = %v", f, doc[f])
		}
	}
	caps := toStrings(doc["capabilities"])
	for _, c := range []string{"launch-ehr", "launch-standalone", "authorize-post", "client-public", "client-confidential-symmetric",
		"client-confidential-asymmetric", "sso-openid-connect", "context-banner", "context-style", "context-ehr-patient",
		"context-ehr-encounter", "context-standalone-patient", "permission-offline", "permission-patient", "permission-user",
		"permission-v1", "permission-v2"} {
		if !slices.Contains(caps, c) {
			t.Errorf("capability %s missing", c)
		}
	}
	if m := toStrings(doc["code_challenge_methods_supported"]); !slices.Contains(m, "S256") || slices.Contains(m, "plain") {
		t.Errorf("code_challenge_methods_supported = %v", m)
	}
	if g := toStrings(doc["grant_types_supported"]); !slices.Contains(g, "authorization_code") || !slices.Contains(g, "client_credentials") {
		t.Errorf("grant_types_supported = %v", g)
	}
	if a := toStrings(doc["token_endpoint_auth_signing_alg_values_supported"]); !slices.Contains(a, "RS384") || !slices.Contains(a, "ES384") {
		t.Errorf("signing algs = %v", a)
	}
	if _, ok := doc["registration_endpoint"]; ok {
		t.Error("registration advertised while disabled")
	}
	st, oidcDoc, _ := getJSON(t, e.issuer+"/.well-known/openid-configuration")
	if st != 200 || oidcDoc["issuer"] != e.issuer || !slices.Contains(toStrings(oidcDoc["id_token_signing_alg_values_supported"]), "RS256") {
		t.Fatalf("openid-configuration: %d %v", st, oidcDoc)
	}
	resp, err := http.Get(e.issuer + "/auth/jwks")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	var rsa, ec int
	for _, k := range set.Keys {
		if !k.IsPublic() || k.KeyID == "" {
			t.Errorf("key %s is not a public key with kid", k.KeyID)
		}
		switch k.Algorithm {
		case "RS256":
			rsa++
		case "ES256":
			ec++
		}
	}
	if rsa != 1 || ec != 1 {
		t.Errorf("jwks: %d RSA, %d EC keys", rsa, ec)
	}
	sec := e.srv.CapabilitySecurity()
	b, _ := json.Marshal(sec)
	for _, want := range []string{"SMART-on-FHIR", "oauth-uris", e.issuer + "/auth/authorize", e.issuer + "/auth/token"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("CapabilitySecurity lacks %s: %s", want, b)
		}
	}
	// CORS preflight.
	req, _ := http.NewRequest(http.MethodOptions, e.fhirBase+"/.well-known/smart-configuration", nil)
	req.Header.Set("Origin", "https://app.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %v %v", err, resp.Header)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

// TestStandalonePatientLaunch: a patient signs in to a public app (PKCE), the code is exchanged
// and refreshed with golang.org/x/oauth2, the ID token verified with go-oidc from discovery.
func TestStandalonePatientLaunch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	conf := &oauth2.Config{
		ClientID: "public-app", RedirectURL: e.appURL + "/callback",
		Endpoint: oauth2.Endpoint{AuthURL: e.issuer + "/auth/authorize", TokenURL: e.issuer + "/auth/token", AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/Patient.rs", "patient/Observation.rs", "patient/Condition.read"},
	}
	verifier := oauth2.GenerateVerifier()
	state := "state-with/odd+chars&é=" + "0123456789"
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("aud", e.fhirBase), oidc.Nonce("n-0123456789"))
	u, _ := url.Parse(authURL)
	b := e.browser()
	loc, p := e.authorize(b, u.Query(), flowOpts{user: "alice", pw: alicePW})
	if loc == nil {
		t.Fatalf("no redirect: %d %s", p.status, p.body)
	}
	if got := loc.Query().Get("state"); got != state {
		t.Fatalf("state %q, want %q", got, state)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s", loc)
	}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Extra("patient") != "alice" {
		t.Errorf("patient = %v", tok.Extra("patient"))
	}
	if _, ok := tok.Extra("expires_in").(float64); !ok {
		t.Errorf("expires_in not a number: %#v", tok.Extra("expires_in"))
	}
	scope, _ := tok.Extra("scope").(string)
	for _, want := range []string{"openid", "fhirUser", "launch/patient", "offline_access", "patient/Patient.rs", "patient/Observation.rs", "patient/Condition.read"} {
		if !slices.Contains(strings.Fields(scope), want) {
			t.Errorf("scope %q lacks %s", scope, want)
		}
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	// ID token verified by go-oidc from our discovery document.
	provider, err := oidc.NewProvider(ctx, e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "public-app"}).Verify(ctx, rawID)
	if err != nil {
		t.Fatal(err)
	}
	var idc struct {
		FHIRUser string `json:"fhirUser"`
		Nonce    string `json:"nonce"`
		SID      string `json:"sid"`
	}
	idt.Claims(&idc)
	if idc.FHIRUser != e.fhirBase+"/Patient/alice" || idc.Nonce != "n-0123456789" || idc.SID == "" || idt.Subject != "alice" {
		t.Errorf("id token claims %+v sub %s", idc, idt.Subject)
	}
	// The access token is the JWT the FHIR side verifies offline.
	at := checkAccessToken(t, e, tok.AccessToken)
	if at.Patient != "alice" || at.FHIRUser != "Patient/alice" || at.ClientID != "public-app" || at.Subject != "alice" || at.Scope != scope || at.SID != idc.SID {
		t.Errorf("access claims %+v", at)
	}
	// Introspection as SMART profiles it.
	intro := introspect(t, e, tok.AccessToken)
	if intro["active"] != true || intro["patient"] != "alice" || intro["client_id"] != "public-app" || intro["sub"] != idt.Subject ||
		intro["iss"] != idt.Issuer || intro["fhirUser"] != idc.FHIRUser || !sameSet(intro["scope"].(string), scope) {
		t.Errorf("introspection %v", intro)
	}
	// Refresh twice in a row: first without scope (x/oauth2), then with the same scope.
	ts := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)})
	tok2, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken || !sameSet(tok2.Extra("scope").(string), scope) || tok2.Extra("patient") != "alice" {
		t.Fatalf("first refresh: %+v scope %v", tok2, tok2.Extra("scope"))
	}
	st, body, h := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "client_id": {"public-app"}, "scope": {scope}}, "", "")
	if st != 200 || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Fatalf("second refresh: %d %v %v", st, body, h)
	}
	if !sameSet(body["scope"].(string), scope) {
		t.Errorf("second refresh scope %v", body["scope"])
	}
	rt3 := body["refresh_token"].(string)
	at3 := body["access_token"].(string)
	// The access tokens of earlier rotations are revoked with them.
	if introspect(t, e, tok.AccessToken)["active"] != false {
		t.Error("first access token still active after rotation")
	}
	// userinfo
	req, _ := http.NewRequest(http.MethodGet, e.issuer+"/auth/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+at3)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("userinfo %v %v", err, resp.Status)
	}
	var ui map[string]any
	json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if ui["sub"] != "alice" || ui["fhirUser"] != e.fhirBase+"/Patient/alice" {
		t.Errorf("userinfo %v", ui)
	}
	// Revocation of the refresh token revokes the grant: the access token too.
	jti := checkAccessToken(t, e, at3).ID
	st, _, _ = postForm(t, e.issuer+"/auth/revoke", url.Values{"token": {rt3}, "token_type_hint": {"refresh_token"}, "client_id": {"public-app"}}, "", "")
	if st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	if got := introspect(t, e, at3); len(got) != 1 || got["active"] != false {
		t.Errorf("revoked access token introspects as %v", got)
	}
	if revoked, err := e.srv.Revoked(ctx, jti); err != nil || !revoked {
		t.Errorf("Revoked(%s) = %v, %v", jti, revoked, err)
	}
	st, body, _ = postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt3}, "client_id": {"public-app"}}, "", "")
	if st != 400 || body["error"] != "invalid_grant" {
		t.Errorf("refresh with revoked token: %d %v", st, body)
	}
	// Unknown tokens: 200 on revoke, inactive on introspection.
	if st, _, _ := postForm(t, e.issuer+"/auth/revoke", url.Values{"token": {"nonsense"}, "client_id": {"public-app"}}, "", ""); st != 200 {
		t.Errorf("revoke unknown: %d", st)
	}
	if got := introspect(t, e, "nonsense"); len(got) != 1 || got["active"] != false {
		t.Errorf("introspect garbage: %v", got)
	}
}

func sameSet(a, b string) bool {
	x, y := strings.Fields(a), strings.Fields(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func checkAccessToken(t *testing.T, e *env, raw string) tokens.AccessClaims {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := tok.Headers[0].ExtraHeaders["typ"]; typ != "at+jwt" || tok.Headers[0].KeyID == "" {
		t.Errorf("header typ %v kid %q", typ, tok.Headers[0].KeyID)
	}
	m := &tokens.Minter{Keys: e.keys, Issuer: e.issuer, Audience: e.fhirBase, Now: e.clock.Now}
	c, err := m.VerifyAccess(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Audience != e.fhirBase || c.Issuer != e.issuer || c.Expiry <= c.IssuedAt || c.ID == "" {
		t.Errorf("claims %+v", c)
	}
	return c
}

// introspect calls introspection authenticated as the confidential client.
func introspect(t *testing.T, e *env, token string) map[string]any {
	t.Helper()
	st, body, _ := postForm(t, e.issuer+"/auth/introspect", url.Values{"token": {token}}, "conf-app", secret)
	if st != 200 {
		t.Fatalf("introspect: %d %v", st, body)
	}
	return body
}

// exchange posts an authorization_code request for a public client.
func exchange(t *testing.T, e *env, code, verifier, redirect string, extra url.Values) (int, map[string]any) {
	t.Helper()
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {"public-app"}}
	for k, v := range extra {
		f[k] = v
	}
	st, body, _ := postForm(t, e.issuer+"/auth/token", f, "", "")
	return st, body
}

func TestConsentWithholdAndCategories(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/callback"
	params := e.authParams("public-app", redirect, "launch/patient patient/Patient.rs patient/Observation.rs patient/Condition.rs patient/Immunization.rs", challenge)
	loc, p := e.authorize(e.browser(), params, flowOpts{user: "alice", pw: alicePW, consent: func(f *form) {
		var keep []string
		for _, v := range f.fields["scope"] {
			// Withhold Immunization, and Observation/Condition at resource level.
			if v != "patient/Immunization.rs" && v != "patient/Observation.rs" && v != "patient/Condition.rs" {
				keep = append(keep, v)
			}
		}
		for _, v := range f.checkboxes {
			if strings.HasSuffix(v, "|laboratory") || strings.HasSuffix(v, "|problem-list-item") {
				keep = append(keep, v)
			}
		}
		// A tampered extra scope must not be granted.
		keep = append(keep, "patient/MedicationRequest.rs", "user/*.cruds")
		f.fields["scope"] = keep
	}})
	if loc == nil {
		t.Fatalf("%d %s", p.status, p.body)
	}
	st, body := exchange(t, e, loc.Query().Get("code"), verifier, redirect, nil)
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	got := strings.Fields(body["scope"].(string))
	want := []string{"launch/patient", "patient/Patient.rs",
		"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
		"patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"}
	if !sameSet(strings.Join(got, " "), strings.Join(want, " ")) {
		t.Errorf("granted %v, want %v", got, want)
	}
	if body["patient"] != "alice" {
		t.Errorf("patient %v", body["patient"])
	}
}

func TestDenyConsent(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkcePair()
	params := e.authParams("public-app", e.appURL+"/callback", "launch/patient patient/Patient.rs", challenge)
	loc, p := e.authorize(e.browser(), params, flowOpts{user: "alice", pw: alicePW, deny: true})
	if loc == nil || loc.Query().Get("error") != "access_denied" || loc.Query().Get("code") != "" || loc.Query().Get("state") != params.Get("state") {
		t.Fatalf("deny: %v %d %s", loc, p.status, p.body)
	}
}

// TestEHRLaunch: a clinician's EHR launch of a confidential (client_secret_basic) app, authorize
// by POST, with patient, encounter and fhirContext from the launch.
func TestEHRLaunch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	l, err := e.srv.CreateLaunch(ctx, authserver.LaunchRequest{ClientID: "conf-app", Patient: "bob", Encounter: "enc-1",
		FHIRContext: nil})
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(l.LaunchURL)
	if lu.Query().Get("iss") != e.fhirBase || lu.Query().Get("launch") != l.Launch {
		t.Fatalf("launch url %s", l.LaunchURL)
	}
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/cb?x=1"
	params := e.authParams("conf-app", redirect, "launch openid fhirUser offline_access user/Patient.rs patient/Observation.rs", challenge)
	params.Set("launch", l.Launch)
	b := e.browser()
	loc, p := e.authorize(b, params, flowOpts{user: "drsmith", pw: drPW, post: true})
	if loc == nil || loc.Query().Get("code") == "" || loc.Query().Get("x") != "1" {
		t.Fatalf("%v %d %s", loc, p.status, p.body)
	}
	st, body, h := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}}, "conf-app", secret)
	if st != 200 || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", st, body)
	}
	if body["patient"] != "bob" || body["encounter"] != "enc-1" || body["need_patient_banner"] != true || body["smart_style_url"] != e.issuer+"/auth/smart-style.json" {
		t.Errorf("context: %v", body)
	}
	if !sameSet(body["scope"].(string), "launch openid fhirUser offline_access user/Patient.rs patient/Observation.rs") {
		t.Errorf("scope %v", body["scope"])
	}
	at := checkAccessToken(t, e, body["access_token"].(string))
	if at.FHIRUser != "Practitioner/smith" || at.Patient != "bob" || at.Encounter != "enc-1" || !slices.Contains(at.Roles, "clinician") {
		t.Errorf("claims %+v", at)
	}
	if st, _, _ := getJSON(t, body["smart_style_url"].(string)); st != 200 {
		t.Errorf("style %d", st)
	}
	// The launch is single-use.
	_, challenge2 := pkcePair()
	params.Set("code_challenge", challenge2)
	loc, _ = e.authorize(b, params, flowOpts{user: "drsmith", pw: drPW, post: true})
	if loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Errorf("launch reuse: %v", loc)
	}
	// A launch for another client is refused.
	l2, _ := e.srv.CreateLaunch(ctx, authserver.LaunchRequest{ClientID: "public-app", Patient: "bob"})
	params.Set("launch", l2.Launch)
	loc, _ = e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW})
	if loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("foreign launch: %v", loc)
	}
	// The launch scope without launch parameter.
	params.Del("launch")
	loc, _ = e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW})
	if loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("launch scope without launch: %v", loc)
	}
	// An expired launch.
	l3, _ := e.srv.CreateLaunch(ctx, authserver.LaunchRequest{ClientID: "conf-app", Patient: "bob"})
	e.clock.Advance(10 * time.Minute)
	params.Set("launch", l3.Launch)
	loc, _ = e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW})
	if loc == nil || loc.Query().Get("error") != "invalid_request" {
		t.Errorf("expired launch: %v", loc)
	}
}

// TestEHRLauncherPage drives /ehr: clinician login, pick patient and app, Launch.
func TestEHRLauncherPage(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	p := b.get(e.issuer + "/ehr")
	f := p.form(t, "/ehr/login")
	f.fields.Set("username", "drsmith")
	f.fields.Set("password", drPW)
	p = b.post(f.action, f.fields)
	if p.status != 200 {
		t.Fatalf("%d %s", p.status, p.body)
	}
	f = p.form(t, "/ehr/launch")
	f.fields.Set("patient", "bob")
	f.fields.Set("client_id", "conf-app")
	p = b.post(f.action, f.fields)
	loc, err := url.Parse(p.header.Get("Location"))
	if p.status != http.StatusSeeOther || err != nil || loc.Query().Get("launch") == "" || loc.Query().Get("iss") != e.fhirBase {
		t.Fatalf("launch redirect: %d %v", p.status, p.header)
	}
	// The app now authorizes; the clinician is already signed in (SSO), so no login page.
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/cb?x=1"
	params := e.authParams("conf-app", redirect, "launch openid fhirUser patient/Patient.rs", challenge)
	params.Set("launch", loc.Query().Get("launch"))
	got, pg := e.authorize(b, params, flowOpts{stopAt: "consent"})
	if got != nil || !strings.Contains(pg.body, "/consent") || strings.Contains(pg.body, "/login") {
		t.Fatalf("expected consent directly: %v %d", got, pg.status)
	}
	f = pg.form(t, "/consent")
	f.fields.Set("decision", "allow")
	p = b.post(f.action, f.fields)
	loc, _ = url.Parse(p.header.Get("Location"))
	st, body, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier}}, "conf-app", secret)
	if st != 200 || body["patient"] != "bob" {
		t.Fatalf("token after launcher: %d %v", st, body)
	}
	// Without CSRF the launch is refused.
	if p := b.post(e.issuer+"/ehr/launch", url.Values{"patient": {"bob"}, "client_id": {"conf-app"}}); p.status != http.StatusForbidden {
		t.Errorf("launch without csrf: %d", p.status)
	}
}

// TestClinicianStandalonePicker: a clinician's standalone launch asks for the patient.
func TestClinicianStandalonePicker(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkcePair()
	redirect := e.appURL + "/callback"
	params := e.authParams("public-app", redirect, "openid fhirUser launch/patient patient/*.rs", challenge)
	loc, p := e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW, patient: "bob"})
	if loc == nil {
		t.Fatalf("%d %s", p.status, p.body)
	}
	st, body := exchange(t, e, loc.Query().Get("code"), verifier, redirect, nil)
	if st != 200 || body["patient"] != "bob" {
		t.Fatalf("%d %v", st, body)
	}
	// A user without a role gets no patient data scopes at all.
	verifier, challenge = pkcePair()
	params = e.authParams("public-app", redirect, "openid fhirUser launch/patient patient/*.rs", challenge)
	loc, _ = e.authorize(e.browser(), params, flowOpts{user: "norole", pw: "norole-password"})
	st, body = exchange(t, e, loc.Query().Get("code"), verifier, redirect, nil)
	if st != 200 || body["patient"] != nil || strings.Contains(body["scope"].(string), "patient/") {
		t.Errorf("no-role user: %d %v", st, body)
	}
}
