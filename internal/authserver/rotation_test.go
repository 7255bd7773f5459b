package authserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/keys"
)

// TestKeyRotationOverlap: tokens signed before a rotation stay valid and their key stays in the
// JWKS during the overlap; new tokens use the new key.
func TestKeyRotationOverlap(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "openid launch/patient offline_access patient/Patient.rs")
	_, tok := exchange(t, e, code, verifier, redirect, nil)
	old := tok["access_token"].(string)
	oldKid := checkAccessTokenKid(t, old)
	if _, err := e.keys.Rotate(context.Background(), keys.PurposeAccess); err != nil {
		t.Fatal(err)
	}
	if _, err := e.keys.Rotate(context.Background(), keys.PurposeID); err != nil {
		t.Fatal(err)
	}
	if introspect(t, e, old)["active"] != true {
		t.Fatal("token of the rotated key rejected during overlap")
	}
	resp, _ := http.Get(e.issuer + "/auth/jwks")
	var set jose.JSONWebKeySet
	json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	if len(set.Keys) != 4 || len(set.Key(oldKid)) != 1 {
		t.Fatalf("jwks during overlap: %d keys", len(set.Keys))
	}
	st, body, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"public-app"}}, "", "")
	if st != 200 || checkAccessTokenKid(t, body["access_token"].(string)) == oldKid {
		t.Fatalf("refresh after rotation: %d %v", st, body)
	}
	// After the overlap the old key is gone and verification with it fails (the token has expired
	// by then anyway).
	e.clock.Advance(49 * time.Hour)
	if err := e.srv.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.keys.Verifier(keys.PurposeAccess, oldKid); err == nil {
		t.Fatal("old key still accepted after overlap")
	}
}

func checkAccessTokenKid(t *testing.T, raw string) string {
	t.Helper()
	sig, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	return sig.Signatures[0].Header.KeyID
}

// TestOnlineAccess: an online_access grant ends with the login session.
func TestOnlineAccess(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient online_access patient/Patient.rs")
	st, tok := exchange(t, e, code, verifier, redirect, nil)
	if st != 200 || tok["refresh_token"] == nil {
		t.Fatalf("%d %v", st, tok)
	}
	refresh := func(rt string) (int, map[string]any) {
		st, b, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"public-app"}}, "", "")
		return st, b
	}
	st, b := refresh(tok["refresh_token"].(string))
	if st != 200 {
		t.Fatalf("refresh within session: %d %v", st, b)
	}
	e.clock.Advance(13 * time.Hour)
	if st, b := refresh(b["refresh_token"].(string)); st != 400 {
		t.Fatalf("refresh after session end: %d %v", st, b)
	}
	// Without offline_access or online_access there is no refresh token.
	code, verifier, redirect = codeFor(t, e, "launch/patient patient/Patient.rs")
	if _, tok := exchange(t, e, code, verifier, redirect, nil); tok["refresh_token"] != nil {
		t.Fatal("refresh token without offline_access")
	}
}
