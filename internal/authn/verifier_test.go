package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	testIssuer   = "https://fhirgate.example"
	testAudience = "https://fhirgate.example/fhir"
)

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fakeKeys is a KeySource whose key set can be swapped and whose calls are counted.
type fakeKeys struct {
	mu    sync.Mutex
	set   jose.JSONWebKeySet
	err   error
	calls atomic.Int64
}

func (f *fakeKeys) PublicKeys(context.Context) (jose.JSONWebKeySet, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set, f.err
}

func (f *fakeKeys) setKeys(err error, keys ...jose.JSONWebKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set = jose.JSONWebKeySet{Keys: keys}
	f.err = err
}

// fakeRevoker revokes the jtis in its set.
type fakeRevoker struct {
	revoked map[string]bool
	err     error
}

func (f *fakeRevoker) Revoked(_ context.Context, jti string) (bool, error) {
	return f.revoked[jti], f.err
}

type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
}

func (k signingKey) public() jose.JSONWebKey {
	jwk := jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
	return jwk.Public()
}

func newECKey(t testing.TB, kid string, curve elliptic.Curve, alg jose.SignatureAlgorithm) signingKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: alg, priv: priv}
}

// sign makes a compact JWS of claims with the header options given.
func sign(t testing.TB, k signingKey, claims map[string]any, opts *jose.SignerOptions) string {
	t.Helper()
	if opts == nil {
		opts = (&jose.SignerOptions{}).WithType("at+jwt")
	}
	key := jose.SigningKey{Algorithm: k.alg, Key: k.priv}
	if k.kid != "" {
		key.Key = jose.JSONWebKey{Key: k.priv, KeyID: k.kid}
	}
	s, err := jose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func baseClaims() map[string]any {
	return map[string]any{
		"iss":         testIssuer,
		"sub":         "user-alice",
		"aud":         testAudience,
		"exp":         testNow.Add(5 * time.Minute).Unix(),
		"iat":         testNow.Add(-time.Minute).Unix(),
		"nbf":         testNow.Add(-time.Minute).Unix(),
		"jti":         "jti-1",
		"client_id":   "my-app",
		"scope":       "openid fhirUser launch/patient patient/*.rs patient/Observation.readx",
		"patient":     "example-alice",
		"encounter":   "enc-1",
		"fhirUser":    "Patient/example-alice",
		"fhirContext": []map[string]string{{"reference": "Encounter/enc-1"}},
		"roles":       []string{"patient"},
		"sid":         "session-1",
	}
}

type fixture struct {
	key     signingKey
	keys    *fakeKeys
	revoker *fakeRevoker
	now     time.Time
	v       *Verifier
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		key:     newECKey(t, "k1", elliptic.P256(), jose.ES256),
		keys:    &fakeKeys{},
		revoker: &fakeRevoker{revoked: map[string]bool{}},
		now:     testNow,
	}
	f.keys.setKeys(nil, f.key.public())
	v, err := NewVerifier(Config{
		Issuer: testIssuer, Audience: testAudience, Keys: f.keys, Revoker: f.revoker,
		Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.v = v
	return f
}

func with(m map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(m, k)
		} else {
			m[k] = kv[i+1]
		}
	}
	return m
}

func TestVerifyValid(t *testing.T) {
	f := newFixture(t)
	tok := sign(t, f.key, baseClaims(), nil)
	p, err := f.v.Authenticate(context.Background(), "Bearer "+tok)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.Subject != "user-alice" || p.ClientID != "my-app" || p.Patient != "example-alice" || p.Encounter != "enc-1" ||
		p.FHIRUser != "Patient/example-alice" || p.JTI != "jti-1" || p.SessionID != "session-1" || p.Issuer != testIssuer {
		t.Errorf("Principal = %+v", p)
	}
	if got, want := p.Scopes.String(), "openid fhirUser launch/patient patient/*.rs"; got != want {
		t.Errorf("Scopes = %q, want %q", got, want)
	}
	if len(p.DroppedScopes) != 1 || p.DroppedScopes[0] != "patient/Observation.readx" {
		t.Errorf("DroppedScopes = %v", p.DroppedScopes)
	}
	if !p.Expiry.Equal(testNow.Add(5*time.Minute)) || !p.IssuedAt.Equal(testNow.Add(-time.Minute)) {
		t.Errorf("times = %v %v", p.IssuedAt, p.Expiry)
	}
	if len(p.FHIRContext) != 1 || p.FHIRContext[0].Reference != "Encounter/enc-1" || len(p.Roles) != 1 {
		t.Errorf("context/roles = %+v %v", p.FHIRContext, p.Roles)
	}
	if typ, id, ok := p.FHIRUserRef(); !ok || typ != "Patient" || id != "example-alice" {
		t.Errorf("FHIRUserRef = %q %q %v", typ, id, ok)
	}
	// Bearer is case-insensitive; application/at+jwt is the same typ.
	if _, err := f.v.Authenticate(context.Background(), "bearer "+tok); err != nil {
		t.Errorf("lower-case scheme: %v", err)
	}
	tok2 := sign(t, f.key, baseClaims(), (&jose.SignerOptions{}).WithType("application/at+jwt"))
	if _, err := f.v.Verify(context.Background(), tok2); err != nil {
		t.Errorf("typ application/at+jwt: %v", err)
	}
	// A one-element audience array is the same audience.
	tok3 := sign(t, f.key, with(baseClaims(), "aud", []string{testAudience}), nil)
	if _, err := f.v.Verify(context.Background(), tok3); err != nil {
		t.Errorf("aud array: %v", err)
	}
	// Within the skew.
	f.now = testNow.Add(5*time.Minute + 29*time.Second)
	if _, err := f.v.Verify(context.Background(), tok); err != nil {
		t.Errorf("within skew after exp: %v", err)
	}
	// An absolute fhirUser on this server is made relative.
	tok4 := sign(t, f.key, with(baseClaims(), "fhirUser", testAudience+"/Practitioner/p1"), nil)
	p4, err := f.v.Verify(context.Background(), tok4)
	if err != nil || p4.FHIRUser != "Practitioner/p1" {
		t.Errorf("absolute fhirUser: %v %+v", err, p4)
	}
	// Backend-service token: no patient, no fhirUser.
	tok5 := sign(t, f.key, with(baseClaims(), "patient", nil, "fhirUser", nil, "encounter", nil, "sub", "backend", "client_id", "backend", "scope", "system/*.rs"), nil)
	if p5, err := f.v.Verify(context.Background(), tok5); err != nil || p5.Patient != "" || p5.FHIRUser != "" {
		t.Errorf("backend token: %v %+v", err, p5)
	}
}

// TestVerifyRejects holds the attacks of SECURITY-LESSONS #8 (audience), A2-A5 of
// SMART-CONFORMANCE §7.1 and the usual JWT confusions. Every one must fail with 401
// invalid_token.
func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	other := newECKey(t, "k1", elliptic.P256(), jose.ES256) // same kid, attacker's key
	p384 := newECKey(t, "k384", elliptic.P384(), jose.ES384)
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := signingKey{kid: "rsa", alg: jose.RS256, priv: rsaPriv}
	f.keys.setKeys(nil, f.key.public(), p384.public(), rsaKey.public())

	good := sign(t, f.key, baseClaims(), nil)
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString

	tamperedPayload := func() string {
		c := baseClaims()
		c["patient"] = "someone-else"
		b, _ := json.Marshal(c)
		return parts[0] + "." + enc(b) + "." + parts[2]
	}()
	noneToken := enc([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + "." + parts[1] + "."
	hsToken := func() string {
		// Algorithm confusion: HMAC keyed with the public key's bytes.
		pub, _ := json.Marshal(f.key.public())
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pub}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(baseClaims())
		jws, _ := s.Sign(b)
		out, _ := jws.CompactSerialize()
		return out
	}()

	tests := []struct {
		name  string
		token string
		now   time.Time
	}{
		{"garbage", "not-a-jwt", testNow},
		{"two parts", parts[0] + "." + parts[1], testNow},
		{"JWE-shaped", good + ".a.b", testNow},
		{"too large", good + strings.Repeat("A", DefaultMaxTokenSize), testNow},
		{"tampered payload", tamperedPayload, testNow},
		{"tampered signature", parts[0] + "." + parts[1] + "." + enc([]byte("x")), testNow},
		{"alg none", noneToken, testNow},
		{"alg HS256 with public key as secret", hsToken, testNow},
		{"RS256 not on allow-list", sign(t, rsaKey, baseClaims(), nil), testNow},
		{"ES384 not on allow-list", sign(t, p384, baseClaims(), nil), testNow},
		{"attacker key with our kid", sign(t, other, baseClaims(), nil), testNow},
		{"unknown kid", sign(t, signingKey{kid: "nope", alg: jose.ES256, priv: f.key.priv}, baseClaims(), nil), testNow},
		{"embedded jwk", sign(t, other, baseClaims(), &jose.SignerOptions{EmbedJWK: true, ExtraHeaders: map[jose.HeaderKey]any{"typ": "at+jwt"}}), testNow},
		{"jku header", sign(t, f.key, baseClaims(), (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("jku", "https://evil.example/jwks")), testNow},
		{"x5u header", sign(t, f.key, baseClaims(), (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("x5u", "https://evil.example/cert")), testNow},
		{"typ JWT (id_token)", sign(t, f.key, baseClaims(), (&jose.SignerOptions{}).WithType("JWT")), testNow},
		{"no typ", sign(t, f.key, baseClaims(), &jose.SignerOptions{}), testNow},
		{"typ refresh", sign(t, f.key, baseClaims(), (&jose.SignerOptions{}).WithType("rt+jwt")), testNow},
		{"expired beyond skew", good, testNow.Add(5*time.Minute + 30*time.Second)},
		{"no exp", sign(t, f.key, with(baseClaims(), "exp", nil), nil), testNow},
		{"nbf in future", sign(t, f.key, with(baseClaims(), "nbf", testNow.Add(time.Minute).Unix()), nil), testNow},
		{"iat in future", sign(t, f.key, with(baseClaims(), "iat", testNow.Add(time.Minute).Unix()), nil), testNow},
		{"wrong issuer", sign(t, f.key, with(baseClaims(), "iss", "https://evil.example"), nil), testNow},
		{"issuer trailing slash", sign(t, f.key, with(baseClaims(), "iss", testIssuer+"/"), nil), testNow},
		{"no issuer", sign(t, f.key, with(baseClaims(), "iss", nil), nil), testNow},
		{"other audience", sign(t, f.key, with(baseClaims(), "aud", "https://other.example/fhir"), nil), testNow},
		{"audience prefix", sign(t, f.key, with(baseClaims(), "aud", testAudience+"-evil"), nil), testNow},
		{"audience longer path", sign(t, f.key, with(baseClaims(), "aud", testAudience+"/Patient"), nil), testNow},
		{"audience shorter", sign(t, f.key, with(baseClaims(), "aud", testIssuer), nil), testNow},
		{"audience trailing slash", sign(t, f.key, with(baseClaims(), "aud", testAudience+"/"), nil), testNow},
		{"audience case", sign(t, f.key, with(baseClaims(), "aud", strings.ToUpper(testAudience)), nil), testNow},
		{"multi audience", sign(t, f.key, with(baseClaims(), "aud", []string{testAudience, "https://other.example/fhir"}), nil), testNow},
		{"no audience", sign(t, f.key, with(baseClaims(), "aud", nil), nil), testNow},
		{"client id as audience (id_token)", sign(t, f.key, with(baseClaims(), "aud", "my-app"), nil), testNow},
		{"no jti", sign(t, f.key, with(baseClaims(), "jti", nil), nil), testNow},
		{"no sub", sign(t, f.key, with(baseClaims(), "sub", nil), nil), testNow},
		{"no client_id", sign(t, f.key, with(baseClaims(), "client_id", nil), nil), testNow},
		{"patient is a reference", sign(t, f.key, with(baseClaims(), "patient", "Patient/1"), nil), testNow},
		{"patient is empty-ish", sign(t, f.key, with(baseClaims(), "patient", "a b"), nil), testNow},
		{"patient is a number", sign(t, f.key, with(baseClaims(), "patient", 12), nil), testNow},
		{"encounter bad", sign(t, f.key, with(baseClaims(), "encounter", "../1"), nil), testNow},
		{"fhirUser other server", sign(t, f.key, with(baseClaims(), "fhirUser", "https://other.example/fhir/Practitioner/1"), nil), testNow},
		{"fhirUser not a type", sign(t, f.key, with(baseClaims(), "fhirUser", "Doctor/1"), nil), testNow},
		{"scope not a string", sign(t, f.key, with(baseClaims(), "scope", []string{"patient/*.rs"}), nil), testNow},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.now = tc.now
			p, err := f.v.Verify(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			status, challenge := Challenge("fhirgate", err)
			if status != 401 || !strings.Contains(challenge, `error="invalid_token"`) {
				t.Errorf("Challenge(%v) = %d, %q; want 401 invalid_token", err, status, challenge)
			}
		})
	}
}

func TestRevocation(t *testing.T) {
	f := newFixture(t)
	tok := sign(t, f.key, baseClaims(), nil)
	f.revoker.revoked["jti-1"] = true
	_, err := f.v.Verify(context.Background(), tok)
	if status, ch := Challenge("fhirgate", err); status != 401 || !strings.Contains(ch, "revoked") {
		t.Errorf("revoked token: %v -> %d %q", err, status, ch)
	}
	// A revocation store that cannot answer fails closed with 503 and no challenge.
	f.revoker.revoked = map[string]bool{}
	f.revoker.err = errors.New("db down")
	_, err = f.v.Verify(context.Background(), tok)
	if status, ch := Challenge("fhirgate", err); err == nil || status != 503 || ch != "" {
		t.Errorf("revoker error: %v -> %d %q", err, status, ch)
	}
}

func TestKeyRotationAndCache(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tok := sign(t, f.key, baseClaims(), nil)
	for range 10 {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.keys.calls.Load(); n != 1 {
		t.Errorf("key source called %d times for 10 verifications, want 1", n)
	}
	// Rotation: a token signed by a new key is accepted after one refresh.
	k2 := newECKey(t, "k2", elliptic.P256(), jose.ES256)
	f.keys.setKeys(nil, f.key.public(), k2.public())
	f.now = testNow.Add(DefaultKeyMinRefresh)
	if _, err := f.v.Verify(ctx, sign(t, k2, baseClaims(), nil)); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := f.keys.calls.Load(); n != 2 {
		t.Errorf("key source called %d times, want 2", n)
	}
	// Unknown kids do not hammer the key source: at most one fetch per KeyMinRefresh.
	bogus := sign(t, signingKey{kid: "bogus", alg: jose.ES256, priv: k2.priv}, baseClaims(), nil)
	for range 20 {
		if _, err := f.v.Verify(ctx, bogus); err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := f.keys.calls.Load(); n != 2 {
		t.Errorf("key source called %d times after unknown kids, want 2", n)
	}
	// A retired key stops working once the cache is refreshed.
	f.keys.setKeys(nil, k2.public())
	f.now = f.now.Add(DefaultKeyMaxAge)
	if _, err := f.v.Verify(ctx, tok); err == nil {
		t.Error("token signed by a retired key accepted")
	}
	// A failing source keeps the last good keys.
	f.keys.setKeys(errors.New("down"))
	f.now = f.now.Add(DefaultKeyMaxAge)
	if _, err := f.v.Verify(ctx, sign(t, k2, baseClaims(), nil)); err == nil {
		// The token's exp is relative to testNow; re-sign with a later exp.
		t.Log("expected: token expired relative to the moved clock")
	}
	c := with(baseClaims(), "exp", f.now.Add(time.Minute).Unix(), "iat", f.now.Unix(), "nbf", f.now.Unix())
	if _, err := f.v.Verify(ctx, sign(t, k2, c, nil)); err != nil {
		t.Errorf("stale keys not used while the source fails: %v", err)
	}
}

func TestKeySelectionWithoutKid(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	noKid := signingKey{alg: jose.ES256, priv: f.key.priv}
	if _, err := f.v.Verify(ctx, sign(t, noKid, baseClaims(), nil)); err != nil {
		t.Errorf("no kid with a single key: %v", err)
	}
	// Two candidate keys and no kid: no guessing.
	f2 := newFixture(t)
	k2 := newECKey(t, "k2", elliptic.P256(), jose.ES256)
	f2.keys.setKeys(nil, f2.key.public(), k2.public())
	if _, err := f2.v.Verify(ctx, sign(t, signingKey{alg: jose.ES256, priv: f2.key.priv}, baseClaims(), nil)); err == nil {
		t.Error("no kid with two keys accepted")
	}
	// Duplicate kid: no guessing either.
	dup := newECKey(t, "k1", elliptic.P256(), jose.ES256)
	f2.keys.setKeys(nil, f2.key.public(), dup.public())
	f2.now = f2.now.Add(DefaultKeyMaxAge)
	c := with(baseClaims(), "exp", f2.now.Add(time.Minute).Unix(), "iat", f2.now.Unix(), "nbf", f2.now.Unix())
	if _, err := f2.v.Verify(ctx, sign(t, f2.key, c, nil)); err == nil {
		t.Error("duplicate kid accepted")
	}
}

func TestKeySourceUnavailable(t *testing.T) {
	keys := &fakeKeys{}
	keys.setKeys(errors.New("down"))
	v, err := NewVerifier(Config{Issuer: testIssuer, Audience: testAudience, Keys: keys, Revoker: &fakeRevoker{}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	k := newECKey(t, "k1", elliptic.P256(), jose.ES256)
	_, err = v.Verify(context.Background(), sign(t, k, baseClaims(), nil))
	if status, ch := Challenge("r", err); status != 503 || ch != "" {
		t.Errorf("no keys: %v -> %d %q", err, status, ch)
	}
}

func TestSymmetricAndEncryptionKeysIgnored(t *testing.T) {
	f := newFixture(t)
	enc := f.key.public()
	enc.Use = "enc"
	f.keys.setKeys(nil, enc, jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "k1", Algorithm: "HS256"})
	if _, err := f.v.Verify(context.Background(), sign(t, f.key, baseClaims(), nil)); err == nil {
		t.Error("token verified with an encryption-only key")
	}
}

func TestNewVerifierConfig(t *testing.T) {
	ok := Config{Issuer: testIssuer, Audience: testAudience, Keys: &fakeKeys{}, Revoker: &fakeRevoker{}}
	if _, err := NewVerifier(ok); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := []Config{
		{Audience: testAudience, Keys: &fakeKeys{}, Revoker: &fakeRevoker{}},
		{Issuer: testIssuer, Keys: &fakeKeys{}, Revoker: &fakeRevoker{}},
		{Issuer: testIssuer, Audience: testAudience, Revoker: &fakeRevoker{}},
		{Issuer: testIssuer, Audience: testAudience, Keys: &fakeKeys{}},
		{Issuer: testIssuer, Audience: testAudience, Keys: &fakeKeys{}, Revoker: &fakeRevoker{}, Algorithms: []jose.SignatureAlgorithm{}},
		{Issuer: testIssuer, Audience: testAudience, Keys: &fakeKeys{}, Revoker: &fakeRevoker{}, Algorithms: []jose.SignatureAlgorithm{jose.HS256}},
		{Issuer: testIssuer, Audience: testAudience, Keys: &fakeKeys{}, Revoker: &fakeRevoker{}, Algorithms: []jose.SignatureAlgorithm{"none"}},
	}
	for i, c := range bad {
		if _, err := NewVerifier(c); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	// A configured allow-list is honoured: RS256 accepted when listed.
	rsaPriv, _ := rsa.GenerateKey(rand.Reader, 2048)
	rk := signingKey{kid: "rsa", alg: jose.RS256, priv: rsaPriv}
	keys := &fakeKeys{}
	keys.setKeys(nil, rk.public())
	v, err := NewVerifier(Config{Issuer: testIssuer, Audience: testAudience, Keys: keys, Revoker: &fakeRevoker{},
		Algorithms: []jose.SignatureAlgorithm{jose.ES256, jose.RS256}, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), sign(t, rk, baseClaims(), nil)); err != nil {
		t.Errorf("RS256 on the allow-list: %v", err)
	}
}

func TestBearerTokenAndChallenge(t *testing.T) {
	tests := []struct {
		header    string
		status    int
		challenge string
	}{
		{"", 401, `Bearer realm="fhirgate"`},
		{"Basic dXNlcjpwYXNz", 401, `Bearer realm="fhirgate"`},
		{"Bearer", 400, `Bearer realm="fhirgate", error="invalid_request", error_description="the Bearer credentials are empty"`},
		{"Bearer ", 400, `Bearer realm="fhirgate", error="invalid_request", error_description="the Bearer credentials are empty"`},
		{"Bearer a b", 400, `Bearer realm="fhirgate", error="invalid_request", error_description="the Bearer credentials are malformed"`},
		{"Bearer a\"b", 400, `Bearer realm="fhirgate", error="invalid_request", error_description="the Bearer credentials are malformed"`},
	}
	for _, tc := range tests {
		_, err := BearerToken(tc.header)
		status, ch := Challenge("fhirgate", err)
		if status != tc.status || ch != tc.challenge {
			t.Errorf("BearerToken(%q) -> %d %q, want %d %q", tc.header, status, ch, tc.status, tc.challenge)
		}
	}
	if tok, err := BearerToken("Bearer abc.DEF-_~+/="); err != nil || tok != "abc.DEF-_~+/=" {
		t.Errorf("BearerToken good = %q, %v", tok, err)
	}
	// Unknown errors fail closed as invalid_token; descriptions are sanitised.
	status, ch := Challenge(`fhir"gate`, errors.New("boom"))
	if status != 401 || ch != `Bearer realm="fhirgate", error="invalid_token", error_description="the access token is not valid"` {
		t.Errorf("Challenge(unknown) = %d %q", status, ch)
	}
	status, ch = Challenge("", invalidToken("bad \"quote\"\n", nil))
	if status != 401 || ch != `Bearer error="invalid_token", error_description="bad quote"` {
		t.Errorf("Challenge(no realm) = %d %q", status, ch)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	f := newFixture(t)
	tok := sign(t, f.key, baseClaims(), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := f.v.Verify(context.Background(), tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkVerifyES256(b *testing.B) {
	f := newFixture(b)
	tok := sign(b, f.key, baseClaims(), nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
