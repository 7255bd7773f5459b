package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/authserver/password"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// tokenEnv is a real authorization server (a store of BENCH_DRIVER, persisted keys) behind a real HTTP
// listener, with one public app, one Backend Services client and one patient user.
type tokenEnv struct {
	issuer, fhirBase, appURL string
	backendKey               *ecdsa.PrivateKey
	browser                  *http.Client
	client                   *http.Client
}

func newTokenEnv(b *testing.B) *tokenEnv {
	b.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := benchTempStore(b, sqlstore.Options{Logger: log}) // BENCH_DRIVER: sqlite or postgres
	kek := make([]byte, 32)
	rand.Read(kek)
	km, err := keys.Open(ctx, keys.Options{Store: db, KEK: kek, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	e := &tokenEnv{issuer: "http://" + l.Addr().String(), appURL: "http://127.0.0.1:1/app"}
	e.fhirBase = e.issuer + "/fhir"
	srv, err := authserver.New(ctx, authserver.Config{Issuer: e.issuer, FHIRBase: e.fhirBase, Store: db, Keys: km, Auth: config.DefaultAuth(),
		PasswordParams: password.Default, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	srv.Register(mux)
	ts := &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	ts.Start()
	b.Cleanup(ts.Close)
	e.backendKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: e.backendKey.Public(), KeyID: "k1", Algorithm: "ES384", Use: "sig"}}})
	var jwks any
	json.Unmarshal(set, &jwks)
	err = srv.LoadConfig(ctx, []config.Client{
		{ClientID: "app", RedirectURIs: []string{e.appURL + "/cb"}, TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"},
			Scope: "openid fhirUser launch/patient offline_access patient/*.rs"},
		{ClientID: "backend", TokenEndpointAuthMethod: "private_key_jwt", GrantTypes: []string{"client_credentials"}, JWKS: jwks, Scope: "system/*.rs"},
	}, []config.User{{Username: "alice", Password: "alice-password", FHIRUser: "Patient/alice", Roles: []string{"patient"}}})
	if err != nil {
		b.Fatal(err)
	}
	e.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), e.appURL) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return e
}

var hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var formAction = regexp.MustCompile(`action="(/auth/interaction/[^"]+)"`)

// code runs one authorization (login once, then single sign-on) and returns a code and verifier.
func (e *tokenEnv) code(b *testing.B) (code, verifier string) {
	vb := make([]byte, 32)
	rand.Read(vb)
	verifier = base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {e.appURL + "/cb"}, "state": {"state-12345678"},
		"scope": {"openid fhirUser launch/patient offline_access patient/*.rs"}, "aud": {e.fhirBase},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	body, loc := e.browse(b, http.MethodGet, e.issuer+"/auth/authorize?"+q.Encode(), nil)
	for range 4 {
		if loc != nil {
			return loc.Query().Get("code"), verifier
		}
		csrf, action := hiddenCSRF.FindStringSubmatch(body), formAction.FindStringSubmatch(body)
		if csrf == nil || action == nil {
			b.Fatalf("unexpected page: %s", body)
		}
		f := url.Values{"csrf": {csrf[1]}}
		if strings.HasSuffix(action[1], "/login") {
			f.Set("username", "alice")
			f.Set("password", "alice-password")
		} else {
			f.Set("decision", "allow")
			for _, m := range regexp.MustCompile(`name="scope" value="([^"]+)" checked`).FindAllStringSubmatch(body, -1) {
				f.Add("scope", m[1])
			}
		}
		body, loc = e.browse(b, http.MethodPost, e.issuer+action[1], f)
	}
	b.Fatal("no code")
	return "", ""
}

func (e *tokenEnv) browse(b *testing.B, method, u string, form url.Values) (string, *url.URL) {
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, rd)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := e.browser.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther || resp.StatusCode == http.StatusFound {
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return "", loc
	}
	return strings.ReplaceAll(string(data), "&#43;", "+"), nil
}

func (e *tokenEnv) token(b *testing.B, form url.Values) map[string]any {
	resp, err := e.client.PostForm(e.issuer+"/auth/token", form)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 200 {
		b.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	return m
}

// BenchmarkTokenCodeExchange measures the authorization_code exchange alone (the browser part
// that produces each code runs with the timer stopped).
func BenchmarkTokenCodeExchange(b *testing.B) {
	e := newTokenEnv(b)
	for b.Loop() {
		b.StopTimer()
		code, verifier := e.code(b)
		b.StartTimer()
		e.token(b, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.appURL + "/cb"}, "code_verifier": {verifier}, "client_id": {"app"}})
	}
}

// BenchmarkTokenRefresh measures refresh with rotation, each iteration using the token the
// previous one returned.
func BenchmarkTokenRefresh(b *testing.B) {
	e := newTokenEnv(b)
	code, verifier := e.code(b)
	rt := e.token(b, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.appURL + "/cb"}, "code_verifier": {verifier}, "client_id": {"app"}})["refresh_token"].(string)
	for b.Loop() {
		rt = e.token(b, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}})["refresh_token"].(string)
	}
}

// BenchmarkTokenClientCredentials measures Backend Services token requests with an ES384
// private_key_jwt assertion (signing the assertion is inside the loop, as a client would).
func BenchmarkTokenClientCredentials(b *testing.B) {
	e := newTokenEnv(b)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: e.backendKey, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer() // the store, its migrations and the server are set up outside the measurement
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			jb := make([]byte, 16)
			rand.Read(jb)
			a, _ := jwt.Signed(sig).Claims(map[string]any{"iss": "backend", "sub": "backend", "aud": e.issuer + "/auth/token",
				"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": hex.EncodeToString(jb)}).Serialize()
			resp, err := e.client.PostForm(e.issuer+"/auth/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}})
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
