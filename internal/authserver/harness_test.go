package authserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/authserver/password"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// clock is the injected time: real time plus an offset the test can advance.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// staticPatients is the PatientLister the app would implement over the FHIR backend; here over a
// fixed list, which is its whole job in these tests (the picker's data source).
type staticPatients []authserver.PatientSummary

func (p staticPatients) ListPatients(_ context.Context, q string, limit int) ([]authserver.PatientSummary, error) {
	var out []authserver.PatientSummary
	for _, x := range p {
		if q == "" || strings.Contains(strings.ToLower(x.Name), strings.ToLower(q)) {
			out = append(out, x)
		}
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

type env struct {
	t        *testing.T
	srv      *authserver.Server
	ts       *httptest.Server
	db       *sqlstore.Store
	keys     *keys.Manager
	clock    *clock
	issuer   string
	fhirBase string
	// app is the client apps redirect to; its handler is never reached (tests stop at the redirect).
	appURL string
}

const (
	alicePW = "alice-password-1"
	drPW    = "smith-password-1"
	secret  = "s3cret-value-for-the-confidential-app"
)

func newEnv(t *testing.T, mutate ...func(*authserver.Config)) *env {
	t.Helper()
	ctx := context.Background()
	ck := &clock{}
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(dir, "fg.db"), Now: ck.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek := make([]byte, 32)
	rand.Read(kek)
	km, err := keys.Open(ctx, keys.Options{Store: db, KEK: kek, Now: ck.Now, Logger: log, Overlap: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	e := &env{t: t, db: db, keys: km, clock: ck, issuer: issuer, fhirBase: issuer + "/fhir", appURL: "http://127.0.0.1:1/app"}
	cfg := authserver.Config{
		Issuer: issuer, FHIRBase: e.fhirBase, Store: db, Keys: km,
		Patients:       staticPatients{{ID: "alice", Name: "Alice Example", BirthDate: "1980-01-01"}, {ID: "bob", Name: "Bob Example"}},
		Auth:           config.DefaultAuth(),
		PasswordParams: password.Params{Memory: 64, Time: 1, Threads: 1},
		Now:            ck.Now, Logger: log,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := authserver.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	mux := http.NewServeMux()
	srv.Register(mux)
	e.ts = &httptest.Server{Listener: l, Config: &http.Server{Handler: mux}}
	e.ts.Start()
	t.Cleanup(e.ts.Close)

	err = srv.LoadConfig(ctx, []config.Client{
		{ClientID: "public-app", ClientName: "Public App", RedirectURIs: []string{e.appURL + "/callback"}, TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
			Scope:      "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access patient/*.cruds user/*.rs"},
		{ClientID: "conf-app", ClientName: "Confidential App", RedirectURIs: []string{e.appURL + "/cb?x=1"}, TokenEndpointAuthMethod: "client_secret_basic",
			ClientSecret: secret, GrantTypes: []string{"authorization_code", "refresh_token"}, LaunchURL: e.appURL + "/launch",
			Scope: "openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs"},
		{ClientID: "post-app", RedirectURIs: []string{e.appURL + "/cb"}, TokenEndpointAuthMethod: "client_secret_post",
			ClientSecret: secret, GrantTypes: []string{"authorization_code", "refresh_token"}, Scope: "openid fhirUser launch/patient offline_access patient/*.rs"},
	}, []config.User{
		{Username: "alice", Password: alicePW, FHIRUser: "Patient/alice", Roles: []string{"patient"}},
		{Username: "drsmith", Password: drPW, FHIRUser: "Practitioner/smith", Roles: []string{"clinician"}},
		{Username: "norole", Password: "norole-password", FHIRUser: "Person/x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// browser is a plain HTTP client with a cookie jar that stops at the app's redirect URI.
type browser struct {
	t      *testing.T
	c      *http.Client
	appURL string
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{t: e.t, appURL: e.appURL}
	b.c = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), e.appURL) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

type page struct {
	status int
	url    *url.URL
	body   string
	header http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, body: string(body), header: resp.Header}
}

func (b *browser) get(u string) page {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) page {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// form is an HTML form as a browser would submit it.
type form struct {
	action string
	fields url.Values
	// checkboxes are the values of every checkbox named "scope" (checked or not).
	checkboxes []string
	radios     map[string][]string
}

func (p page) forms(t *testing.T) []form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	var out []form
	var cur *form
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "form" {
			f := form{fields: url.Values{}, radios: map[string][]string{}}
			method := "get"
			for _, a := range n.Attr {
				if a.Key == "action" {
					f.action = p.url.ResolveReference(&url.URL{Path: a.Val}).String()
					if u, err := url.Parse(a.Val); err == nil {
						f.action = p.url.ResolveReference(u).String()
					}
				}
				if a.Key == "method" {
					method = a.Val
				}
			}
			if method == "post" {
				out = append(out, f)
				cur = &out[len(out)-1]
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
				cur = nil
				return
			}
		}
		if cur != nil && n.Type == html.ElementNode && n.Data == "input" {
			attr := map[string]string{}
			checked := false
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
				if a.Key == "checked" {
					checked = true
				}
			}
			switch attr["type"] {
			case "checkbox":
				cur.checkboxes = append(cur.checkboxes, attr["value"])
				if checked {
					cur.fields.Add(attr["name"], attr["value"])
				}
			case "radio":
				cur.radios[attr["name"]] = append(cur.radios[attr["name"]], attr["value"])
				if checked {
					cur.fields.Set(attr["name"], attr["value"])
				}
			default:
				if attr["name"] != "" {
					cur.fields.Set(attr["name"], attr["value"])
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

// onlyForm returns the single POST form of the page whose action contains part.
func (p page) form(t *testing.T, part string) form {
	t.Helper()
	for _, f := range p.forms(t) {
		if strings.Contains(f.action, part) {
			return f
		}
	}
	t.Fatalf("no form %q on page (status %d):\n%s", part, p.status, p.body)
	return form{}
}

func pkcePair() (verifier, challenge string) {
	b := make([]byte, 48)
	rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func postForm(t *testing.T, u string, form url.Values, basicUser, basicPass string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("not JSON (%d): %s", resp.StatusCode, body)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func getJSON(t *testing.T, u string) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, resp.Header
}
