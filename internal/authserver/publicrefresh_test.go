package authserver_test

import (
	"net/url"
	"testing"
)

// fhirclient refreshes a public client's token with grant_type and refresh_token only (no
// client_id): the server names the client from the grant. A confidential client's refresh token
// without client authentication is still refused, and so is a client_id that is not the token's.
func TestRefreshWithoutClientID(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	_, tok := exchange(t, e, code, verifier, redirect, nil)
	rt := tok["refresh_token"].(string)

	// A confidential client's refresh token.
	cv, cc := pkcePair()
	credirect := e.appURL + "/cb?x=1"
	loc, p := e.authorize(e.browser(), e.authParams("conf-app", credirect, "launch/patient offline_access patient/Patient.rs", cc), flowOpts{user: "alice", pw: alicePW})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code for conf-app: %v %d", loc, p.status)
	}
	st, ctok, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {credirect}, "code_verifier": {cv}}, "conf-app", secret)
	if st != 200 {
		t.Fatalf("conf-app exchange: %d %v", st, ctok)
	}
	crt := ctok["refresh_token"].(string)

	refresh := func(f url.Values) (int, map[string]any) {
		st, b, _ := postForm(t, e.issuer+"/auth/token", f, "", "")
		return st, b
	}
	// Negative cases first: none of them may consume the public client's token.
	neg := []struct {
		name   string
		form   url.Values
		status int
		err    string
	}{
		{"confidential token, no authentication", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {crt}}, 401, "invalid_client"},
		{"public token under another client_id", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"post-app"}}, 401, "invalid_client"},
		{"unknown token, no client", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"bm90LWEtdG9rZW4"}}, 401, "invalid_client"},
		{"empty token, no client", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {""}}, 401, "invalid_client"},
	}
	for _, tc := range neg {
		t.Run(tc.name, func(t *testing.T) {
			st, b := refresh(tc.form)
			if st != tc.status || b["error"] != tc.err {
				t.Fatalf("got %d %v, want %d %s", st, b, tc.status, tc.err)
			}
		})
	}
	// The public client's refresh without client_id works and rotates the token.
	st, b := refresh(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if st != 200 || b["access_token"] == nil || b["refresh_token"] == nil || b["refresh_token"] == rt {
		t.Fatalf("public refresh without client_id: %d %v", st, b)
	}
	checkAccessToken(t, e, b["access_token"].(string))
	// Reuse of the rotated token is still detected without client_id.
	if st, b := refresh(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); st != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", st, b)
	}
}
