package authserver_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/fhirgate/fhirgate/internal/authn"
)

// TestAccessTokenContract: the FHIR side's verifier (internal/authn) accepts our access tokens
// with the keys and revocation list we export, and refuses them once revoked.
func TestAccessTokenContract(t *testing.T) {
	e := newEnv(t)
	v, err := authn.NewVerifier(authn.Config{Issuer: e.issuer, Audience: e.fhirBase, Keys: e.keys, Revoker: e.srv, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	code, verifier, redirect := codeFor(t, e, "openid fhirUser launch/patient offline_access patient/*.rs")
	_, tok := exchange(t, e, code, verifier, redirect, nil)
	p, err := v.Verify(context.Background(), tok["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if p.Patient != "alice" {
		t.Errorf("principal %+v", p)
	}
	// An ID token is not an access token.
	if _, err := v.Verify(context.Background(), tok["id_token"].(string)); err == nil {
		t.Error("ID token accepted as access token")
	}
	postForm(t, e.issuer+"/auth/revoke", url.Values{"token": {tok["access_token"].(string)}, "client_id": {"public-app"}}, "", "")
	if _, err := v.Verify(context.Background(), tok["access_token"].(string)); err == nil {
		t.Error("revoked token accepted")
	}
}
