package multiinstance

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	_ "github.com/jackc/pgx/v5/stdlib" // schema setup
)

// env is one deployment: a schema of the test database, a Redis key prefix, the shared secrets
// and the config file every instance runs with.
type env struct {
	t          *testing.T
	dsn        string // the schema's DSN (search_path set)
	redis      string
	prefix     string
	issuer     string // base_url of the deployment (the load balancer's URL); instance A's address
	configPath string
	secrets    []string // KEY=value for every instance
	backendKey *ecdsa.PrivateKey
	appURL     string
	db         *sql.DB // the test's own connection to the schema
	adminToken string
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// fhirgateBinary builds cmd/fhirgate once per test run.
func fhirgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fhirgate-mi-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "fhirgate")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/fhirgate/fhirgate/cmd/fhirgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newEnv makes a fresh schema and Redis prefix and writes the config. extra is YAML appended to
// the config (rate limits). pgDSN overrides the DSN the instances use (a proxy in front of the
// database); the test itself always talks to the database directly.
func newEnv(t *testing.T, extra string, pgVia func(dsn string) string) *env {
	t.Helper()
	base, rds := os.Getenv("FHIRGATE_TEST_POSTGRES"), os.Getenv("FHIRGATE_TEST_REDIS")
	if base == "" || rds == "" {
		t.Skip("FHIRGATE_TEST_POSTGRES (a PostgreSQL DSN) and FHIRGATE_TEST_REDIS (host:port) must both be set; skipping the multi-instance test")
	}
	fhirgateBinary(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	schema := "fhirgate_mi_" + randHex(6)
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("FHIRGATE_TEST_POSTGRES must be a URL here: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	e := &env{t: t, dsn: u.String(), adminToken: randHex(24), redis: rds, prefix: "fhirgate-test:mi:" + randHex(6) + ":", appURL: "http://127.0.0.1:1/app"}
	t.Cleanup(func() { e.cleanRedis() })
	e.db, err = sql.Open("pgx", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	e.backendKey, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: e.backendKey.Public(), KeyID: "k1", Algorithm: "ES384", Use: "sig"})
	e.secrets = []string{
		"FHIRGATE_KEY_ENCRYPTION_KEY=" + randHex(32),
		"FHIRGATE_PAGE_TOKEN_KEY=" + randHex(32),
		"FHIRGATE_ADMIN_TOKEN=" + e.adminToken,
	}
	instanceDSN := e.dsn
	if pgVia != nil {
		instanceDSN = pgVia(e.dsn)
	}
	// Behind a load balancer every instance has the same public URL, the issuer of every token.
	e.issuer = "http://fhirgate-lb.test"
	cfg := fmt.Sprintf(`storage: {driver: postgres, dsn: %[1]q, max_open_conns: 8}
log: {level: warn}
admin_addr: ""
redis: {addr: %[2]q, key_prefix: %[3]q, revocation_cache_ttl: 30s}
clients:
  - client_id: app
    redirect_uris: [%[4]s/cb]
    token_endpoint_auth_method: none
    grant_types: [authorization_code, refresh_token]
    scope: "openid fhirUser launch/patient offline_access patient/*.rs"
  - client_id: backend
    token_endpoint_auth_method: private_key_jwt
    grant_types: [client_credentials]
    jwks: {keys: [%[5]s]}
    scope: "system/*.rs"
  - client_id: limited
    token_endpoint_auth_method: private_key_jwt
    grant_types: [client_credentials]
    jwks: {keys: [%[5]s]}
    scope: "system/*.rs"
  - client_id: writer
    token_endpoint_auth_method: private_key_jwt
    grant_types: [client_credentials]
    jwks: {keys: [%[5]s]}
    scope: "system/*.cruds"
users:
  - username: alice
    password: alice-password-1
    fhir_user: Patient/alice
    roles: [patient]
%[6]s`, instanceDSN, rds, e.prefix, e.appURL, jwk, extra)
	e.configPath = filepath.Join(t.TempDir(), "fhirgate.yaml")
	if err := os.WriteFile(e.configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) cleanRedis() {
	// Keys of the rate limiter and the shared state start with the test's prefixes.
	out, err := exec.Command("redis-cli", "-h", strings.Split(e.redis, ":")[0], "-p", strings.Split(e.redis, ":")[1], "--scan", "--pattern", e.prefix+"*").Output()
	if err != nil {
		return
	}
	for _, k := range strings.Fields(string(out)) {
		_ = exec.Command("redis-cli", "-h", strings.Split(e.redis, ":")[0], "-p", strings.Split(e.redis, ":")[1], "DEL", k).Run()
	}
}

// instance is one running `fhirgate serve`.
type instance struct {
	name  string
	url   string // where the test reaches it
	admin string // the admin listener's URL
	cmd   *exec.Cmd
	logs  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs an instance listening on addr with base_url e.issuer, and waits for /readyz.
func (e *env) start(name, addr string) *instance {
	t := e.t
	t.Helper()
	adminAddr := freeAddr(t)
	cmd := exec.Command(fhirgateBinary(t), "serve", "--config", e.configPath, "--addr", addr, "--admin-addr", adminAddr, "--base-url", e.issuer, "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), e.secrets...)
	in := &instance{name: name, url: "http://" + addr, admin: "http://" + adminAddr, cmd: cmd, logs: &lockedBuffer{}}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = in.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(stdout)) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, in.logs.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(in.url + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), "shared state: ok") {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready: %v\n%s", name, err, in.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- OAuth client side ---

var (
	hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	formAction = regexp.MustCompile(`action="(/auth/interaction/[^"]+)"`)
	scopeBox   = regexp.MustCompile(`name="scope" value="([^"]+)" checked`)
)

// code runs the authorization code flow as alice in a browser against in and returns a code and
// its PKCE verifier.
func (e *env) code(in *instance) (code, verifier string) {
	t := e.t
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier = randHex(32)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {e.appURL + "/cb"}, "state": {"state-" + randHex(8)},
		"scope": {"openid fhirUser launch/patient offline_access patient/*.rs"}, "aud": {e.issuer + "/fhir"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	target := in.url + "/auth/authorize?" + q.Encode()
	var form url.Values
	for range 8 {
		var resp *http.Response
		var err error
		if form == nil {
			resp, err = browser.Get(target)
		} else {
			resp, err = browser.PostForm(target, form)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); loc != "" {
			lu, _ := url.Parse(loc)
			if c := lu.Query().Get("code"); c != "" {
				return c, verifier
			}
			if lu.IsAbs() {
				lu.Scheme, lu.Host = "http", strings.TrimPrefix(in.url, "http://")
				target = lu.String()
			} else {
				target = in.url + loc
			}
			form = nil
			continue
		}
		page := strings.ReplaceAll(string(body), "&#43;", "+")
		csrf, action := hiddenCSRF.FindStringSubmatch(page), formAction.FindStringSubmatch(page)
		if csrf == nil || action == nil {
			t.Fatalf("unexpected page (%d): %s", resp.StatusCode, page)
		}
		form = url.Values{"csrf": {csrf[1]}}
		if strings.HasSuffix(action[1], "/login") {
			form.Set("username", "alice")
			form.Set("password", "alice-password-1")
		} else {
			form.Set("decision", "allow")
			for _, m := range scopeBox.FindAllStringSubmatch(page, -1) {
				form.Add("scope", m[1])
			}
		}
		target = in.url + action[1]
	}
	t.Fatal("no code")
	return "", ""
}

// post posts a form and returns the status and decoded JSON body.
func post(t *testing.T, u string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// assertion is a fresh private_key_jwt client assertion of the backend client.
func (e *env) assertion() string { return e.assertionOf("backend") }

// assertionOf is a fresh client assertion of client (both key-based clients share the key).
func (e *env) assertionOf(client string) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: jose.JSONWebKey{Key: e.backendKey, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := jwt.Signed(sig).Claims(map[string]any{"iss": client, "sub": client, "aud": e.issuer + "/auth/token",
		"exp": time.Now().Add(4 * time.Minute).Unix(), "jti": randHex(16)}).Serialize()
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) clientAuth(form url.Values, assertion string) url.Values {
	form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	form.Set("client_assertion", assertion)
	return form
}

// backendToken gets a client_credentials token at in.
func (e *env) backendToken(in *instance) string { return e.clientToken(in, "backend") }

// clientToken gets a client_credentials token of client at in.
func (e *env) clientToken(in *instance, client string) string {
	return e.clientTokenScope(in, client, "system/*.rs")
}

// clientTokenScope gets a client_credentials token of client with scope at in.
func (e *env) clientTokenScope(in *instance, client, scope string) string {
	e.t.Helper()
	st, m := post(e.t, in.url+"/auth/token", e.clientAuth(url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}, e.assertionOf(client)))
	if st != 200 {
		e.t.Fatalf("client_credentials at %s: %d %v", in.name, st, m)
	}
	return m["access_token"].(string)
}

// fhirGet returns the status of an authenticated FHIR GET at in.
func fhirGet(ctx context.Context, in *instance, path, token string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/fhir/"+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// fhirWrite sends a FHIR write (body JSON, or none for a DELETE) at in and returns the status and
// the decoded response.
func fhirWrite(ctx context.Context, in *instance, method, path, token, body string) (int, map[string]any, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(ctx, method, in.url+"/fhir/"+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/fhir+json")
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, nil
}
