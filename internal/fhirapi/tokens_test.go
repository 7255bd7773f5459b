package fhirapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// minter signs access tokens the way the authorization server does (ES256, typ at+jwt), so the
// API is tested with the real verifier and policy engine.
type minter struct {
	key    *ecdsa.PrivateKey
	issuer string
	aud    string
}

func newMinter(t *testing.T, fhirBase string) *minter {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &minter{key: key, issuer: strings.TrimSuffix(fhirBase, "/fhir"), aud: fhirBase}
}

type claims struct {
	scope, patient, fhirUser, sub, client string
}

func (m *minter) token(t *testing.T, c claims) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: m.key},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "test-key"))
	if err != nil {
		t.Fatal(err)
	}
	if c.sub == "" {
		c.sub = "tester"
	}
	if c.client == "" {
		c.client = "test-client"
	}
	now := time.Now()
	body := map[string]any{
		"iss": m.issuer, "aud": m.aud, "sub": c.sub, "client_id": c.client, "scope": c.scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": rand.Text(),
	}
	if c.patient != "" {
		body["patient"] = c.patient
	}
	if c.fhirUser != "" {
		body["fhirUser"] = c.fhirUser
	}
	tok, err := jwt.Signed(signer).Claims(body).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// PublicKeys implements authn.KeySource.
func (m *minter) PublicKeys(context.Context) (jose.JSONWebKeySet, error) {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &m.key.PublicKey, KeyID: "test-key", Algorithm: "ES256", Use: "sig"}}}, nil
}

// noRevocations answers that no token is revoked (revocation has its own tests in authn).
type noRevocations struct{}

func (noRevocations) Revoked(context.Context, string) (bool, error) { return false, nil }

func (m *minter) verifier(t *testing.T) *authn.Verifier {
	t.Helper()
	v, err := authn.NewVerifier(authn.Config{Issuer: m.issuer, Audience: m.aud, Keys: m, Revoker: noRevocations{}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newPolicy(t *testing.T, reg *search.Registry, base string) *policy.Engine {
	t.Helper()
	matcher, err := search.NewMatcher(reg)
	if err != nil {
		t.Fatal(err)
	}
	membership, err := compartment.NewMembership(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(policy.Config{Registry: reg, Matcher: matcher, Membership: membership, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
