package authserver_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
)

type backendKey struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
}

func (k backendKey) jwks() json.RawMessage {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}}}
	b, _ := json.Marshal(set)
	return b
}

func newES384(t *testing.T) backendKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return backendKey{priv: k, alg: jose.ES384, kid: "es-1"}
}

func newRS384(t *testing.T) backendKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return backendKey{priv: k, alg: jose.RS384, kid: "rs-1"}
}

type assertionOpts struct {
	iss, sub, aud, jti, kid, jku, typ string
	exp                               time.Time
	alg                               jose.SignatureAlgorithm
}

func (k backendKey) assertion(t *testing.T, o assertionOpts) string {
	t.Helper()
	alg := k.alg
	if o.alg != "" {
		alg = o.alg
	}
	kid := k.kid
	if o.kid != "" {
		kid = o.kid
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(orDefault(o.typ, "JWT")))
	if o.jku != "" {
		opts = opts.WithHeader("jku", o.jku)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if o.jti == "" {
		b := make([]byte, 32)
		rand.Read(b)
		o.jti = hex.EncodeToString(b)
	}
	claims := map[string]any{"iss": o.iss, "sub": orDefault(o.sub, o.iss), "aud": o.aud, "jti": o.jti, "exp": o.exp.Unix()}
	s, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func backendEnv(t *testing.T) (*env, backendKey, backendKey, *int32) {
	e := newEnv(t)
	es, rs := newES384(t), newRS384(t)
	var hits int32
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt32(&hits, 1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(rs.jwks())
	}))
	t.Cleanup(jwksSrv.Close)
	for _, c := range []config.Client{
		{ClientID: "bulk-es", TokenEndpointAuthMethod: "private_key_jwt", GrantTypes: []string{"client_credentials"}, JWKS: mustAny(es.jwks()), Scope: "system/*.rs"},
		{ClientID: "bulk-rs", TokenEndpointAuthMethod: "private_key_jwt", GrantTypes: []string{"client_credentials"}, JWKSURI: jwksSrv.URL + "/jwks.json", Scope: "system/Patient.rs system/Observation.rs"},
	} {
		m, sec, err := authserver.MetadataFromConfig(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.srv.Clients().Put(context.Background(), m, sec, "admin"); err != nil {
			t.Fatal(err)
		}
	}
	return e, es, rs, &hits
}

func mustAny(b []byte) any {
	var v any
	json.Unmarshal(b, &v)
	return v
}

func ccRequest(t *testing.T, e *env, assertion, scope string) (int, map[string]any, http.Header) {
	t.Helper()
	return postForm(t, e.issuer+"/auth/token", url.Values{
		"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion},
	}, "", "")
}

func TestBackendServices(t *testing.T) {
	e, es, rs, hits := backendEnv(t)
	tokenURL := e.issuer + "/auth/token"
	now := e.clock.Now()
	// ES384 with an inline JWKS; v1 scope syntax is accepted and answered in v1.
	st, body, h := ccRequest(t, e, es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(5 * time.Minute)}), "system/*.read")
	if st != 200 || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("ES384: %d %v", st, body)
	}
	if body["scope"] != "system/*.read" || body["expires_in"].(float64) > 300 || body["refresh_token"] != nil || !strings.EqualFold(body["token_type"].(string), "bearer") {
		t.Errorf("ES384 response %v", body)
	}
	at := checkAccessToken(t, e, body["access_token"].(string))
	if at.Subject != "bulk-es" || at.ClientID != "bulk-es" || at.Patient != "" {
		t.Errorf("claims %+v", at)
	}
	// RS384 through a JWKS URL (jku equal to it), scope narrowed to the registration.
	st, body, _ = ccRequest(t, e, rs.assertion(t, assertionOpts{iss: "bulk-rs", aud: tokenURL, exp: now.Add(4 * time.Minute)}), "system/Patient.rs system/Observation.read")
	if st != 200 || !sameSet(body["scope"].(string), "system/Patient.rs system/Observation.read") {
		t.Fatalf("RS384: %d %v", st, body)
	}
	st, _, _ = ccRequest(t, e, rs.assertion(t, assertionOpts{iss: "bulk-rs", aud: tokenURL, exp: now.Add(4 * time.Minute), jku: rsJWKSURL(t, e)}), "system/Patient.rs")
	if st != 200 {
		t.Fatalf("RS384 with jku: %d", st)
	}
	if n := atomic.LoadInt32(hits); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (cached)", n)
	}
	// Introspection of a backend token.
	if got := introspect(t, e, body["access_token"].(string)); got["active"] != true || got["client_id"] != "bulk-rs" {
		t.Errorf("introspect %v", got)
	}

	neg := []struct {
		name   string
		a      func() string
		scope  string
		status int
		err    string
	}{
		{"jti replay", func() string {
			a := es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute), jti: "fixed-jti"})
			if st, b, _ := ccRequest(t, e, a, "system/*.rs"); st != 200 {
				t.Fatalf("first use: %d %v", st, b)
			}
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(2 * time.Minute), jti: "fixed-jti"})
		}, "system/*.rs", 401, "invalid_client"},
		{"exp too far", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(10 * time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"expired", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(-time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"aud issuer", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: e.issuer, exp: now.Add(time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"unknown iss", func() string {
			return es.assertion(t, assertionOpts{iss: "not_a_valid_iss", aud: tokenURL, exp: now.Add(time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"sub differs", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", sub: "bulk-rs", aud: tokenURL, exp: now.Add(time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"wrong key", func() string {
			return newES384(t).assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"unknown kid", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute), kid: "other"})
		}, "system/*.rs", 401, "invalid_client"},
		{"ES256 not allowed", func() string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return backendKey{priv: k, alg: jose.ES256, kid: "es-1"}.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute)})
		}, "system/*.rs", 401, "invalid_client"},
		{"foreign jku", func() string {
			return rs.assertion(t, assertionOpts{iss: "bulk-rs", aud: tokenURL, exp: now.Add(time.Minute), jku: "https://evil.example/jwks"})
		}, "system/Patient.rs", 401, "invalid_client"},
		{"typ not JWT", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute), typ: "at+jwt"})
		}, "system/*.rs", 401, "invalid_client"},
		{"scope outside registration", func() string {
			return rs.assertion(t, assertionOpts{iss: "bulk-rs", aud: tokenURL, exp: now.Add(time.Minute)})
		}, "system/Condition.rs", 400, "invalid_scope"},
		{"no scope", func() string {
			return es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute)})
		}, "", 400, "invalid_scope"},
	}
	for _, tc := range neg {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := ccRequest(t, e, tc.a(), tc.scope)
			if st != tc.status || body["error"] != tc.err || body["access_token"] != nil {
				t.Fatalf("%d %v", st, body)
			}
		})
	}
	t.Run("bad assertion type", func(t *testing.T) {
		st, body, _ := postForm(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
			"client_assertion_type": {"not_an_assertion_type"}, "client_assertion": {es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute)})}}, "", "")
		if st != 400 || body["error"] != "invalid_request" {
			t.Fatalf("%d %v", st, body)
		}
	})
	t.Run("bad grant type", func(t *testing.T) {
		st, body, _ := postForm(t, tokenURL, url.Values{"grant_type": {"not_a_grant_type"}, "scope": {"system/*.rs"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {es.assertion(t, assertionOpts{iss: "bulk-es", aud: tokenURL, exp: now.Add(time.Minute)})}}, "", "")
		if st != 400 || body["error"] != "unsupported_grant_type" {
			t.Fatalf("%d %v", st, body)
		}
	})
	t.Run("public client cannot use client_credentials", func(t *testing.T) {
		st, body, _ := postForm(t, tokenURL, url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}, "client_id": {"public-app"}}, "", "")
		if st < 400 || body["access_token"] != nil {
			t.Fatalf("%d %v", st, body)
		}
	})
}

func rsJWKSURL(t *testing.T, e *env) string {
	c, err := e.srv.Clients().Get(context.Background(), "bulk-rs")
	if err != nil {
		t.Fatal(err)
	}
	return c.Metadata.JWKSURI
}

// TestConfidentialAsymmetricLaunch: a private_key_jwt client completes the code flow.
func TestConfidentialAsymmetricLaunch(t *testing.T) {
	e := newEnv(t)
	es := newES384(t)
	redirect := e.appURL + "/asym"
	if err := e.srv.Clients().Put(context.Background(), authserver.ClientMetadata{ClientID: "asym-app", RedirectURIs: []string{redirect},
		TokenEndpointAuthMethod: "private_key_jwt", JWKS: es.jwks(), GrantTypes: []string{"authorization_code", "refresh_token"},
		Scope: "openid fhirUser launch/patient offline_access patient/*.rs"}, "", "admin"); err != nil {
		t.Fatal(err)
	}
	verifier, challenge := pkcePair()
	loc, p := e.authorize(e.browser(), e.authParams("asym-app", redirect, "openid fhirUser launch/patient offline_access patient/*.rs", challenge), flowOpts{user: "alice", pw: alicePW})
	if loc == nil {
		t.Fatalf("%d %s", p.status, p.body)
	}
	tokenURL := e.issuer + "/auth/token"
	st, body, _ := postForm(t, tokenURL, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect}, "code_verifier": {verifier},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {es.assertion(t, assertionOpts{iss: "asym-app", aud: tokenURL, exp: e.clock.Now().Add(time.Minute)})}}, "", "")
	if st != 200 || body["id_token"] == nil || body["patient"] != "alice" {
		t.Fatalf("%d %v", st, body)
	}
	st, body, _ = postForm(t, tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {es.assertion(t, assertionOpts{iss: "asym-app", aud: tokenURL, exp: e.clock.Now().Add(time.Minute)})}}, "", "")
	if st != 200 {
		t.Fatalf("refresh: %d %v", st, body)
	}
}

func TestDynamicRegistration(t *testing.T) {
	e := newEnv(t, func(c *authserver.Config) {
		c.Auth.Registration.Enabled = true
		c.InitialAccessToken = "initial-token-0123456789"
	})
	body := `{"client_name":"Dyn","redirect_uris":["` + e.appURL + `/dyn"],"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code"],"scope":"openid patient/*.rs launch/patient"}`
	post := func(tok, b string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.issuer+"/auth/register", strings.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
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
	if st, _ := post("", body); st != 401 {
		t.Errorf("without initial token: %d", st)
	}
	if st, _ := post("wrong", body); st != 401 {
		t.Errorf("wrong initial token: %d", st)
	}
	st, m := post("initial-token-0123456789", body)
	if st != 201 || m["client_id"] == nil || m["client_secret"] == nil {
		t.Fatalf("register: %d %v", st, m)
	}
	if st, m := post("initial-token-0123456789", `{"redirect_uris":["`+e.appURL+`/dyn#frag"]}`); st != 400 || m["error"] != "invalid_redirect_uri" {
		t.Errorf("bad redirect: %d %v", st, m)
	}
	if st, m := post("initial-token-0123456789", `{"redirect_uris":["`+e.appURL+`/x"],"scope":"patient/*.rs __ext"}`); st != 400 || m["error"] != "invalid_client_metadata" {
		t.Errorf("bad scope: %d %v", st, m)
	}
	// The registered client works: a full code flow with its generated secret.
	cid, csec := m["client_id"].(string), m["client_secret"].(string)
	verifier, challenge := pkcePair()
	loc, p := e.authorize(e.browser(), e.authParams(cid, e.appURL+"/dyn", "openid launch/patient patient/*.rs", challenge), flowOpts{user: "alice", pw: alicePW})
	if loc == nil {
		t.Fatalf("%d %s", p.status, p.body)
	}
	st, tok, _ := postForm(t, e.issuer+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {e.appURL + "/dyn"}, "code_verifier": {verifier}}, cid, csec)
	if st != 200 || tok["patient"] != "alice" {
		t.Fatalf("dynamic client token: %d %v", st, tok)
	}
	// Off by default.
	e2 := newEnv(t)
	resp, _ := http.Post(e2.issuer+"/auth/register", "application/json", strings.NewReader(body))
	if resp.StatusCode != 404 {
		t.Errorf("registration enabled by default: %d", resp.StatusCode)
	}
}
