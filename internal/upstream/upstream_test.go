package upstream_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/backend/backendtest"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// plainFHIR starts a fhirgate with FHIR security off on a loopback port: a real FHIR server
// for the upstream backend to talk to. It returns the FHIR base.
func plainFHIR(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = t.TempDir()
	cfg.AdminAddr = ""
	cfg.Gateway.RateLimit.Enabled = false
	cfg.FHIR.Security.Mode = config.FHIRSecurityOff
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(context.Background(), cfg, app.Options{Logger: quiet, Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return base + "/fhir"
}

func newBackend(t *testing.T, base string, mod func(*upstream.Options)) *upstream.Backend {
	t.Helper()
	opts := upstream.Options{BaseURL: base, Timeout: 5 * time.Second, Logger: quiet, TrustTotals: true}
	if mod != nil {
		mod(&opts)
	}
	b, err := upstream.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The backend conformance suite against a real FHIR server over HTTP. An upstream has no
// create-with-id and no multi-write transactions: those tests are skipped here and the refusal
// is tested by TestInTxRefusesWrites.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a FHIR server per test")
	}
	backendtest.Run(t, func(t *testing.T) backend.Backend { return newBackend(t, plainFHIR(t), nil) },
		"CreateWithID", "TxRollback", "TxCommit")
}

func TestInTxRefusesWrites(t *testing.T) {
	ctx := context.Background()
	b := newBackend(t, plainFHIR(t), nil)
	body := []byte(`{"resourceType":"Patient","gender":"male"}`)
	existing, _, err := b.Create(ctx, "Patient", body, backend.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = b.InTx(ctx, func(tx backend.Backend) error {
		// Reads and searches work inside.
		if _, err := tx.Read(ctx, "Patient", existing.ID); err != nil {
			t.Errorf("read in InTx: %v", err)
		}
		if _, _, err := tx.Create(ctx, "Patient", body, backend.CreateOptions{}); !errors.Is(err, upstream.ErrNotAtomic) {
			t.Errorf("create in InTx = %v, want ErrNotAtomic", err)
		}
		if _, _, err := tx.Update(ctx, "Patient", existing.ID, body, backend.UpdateOptions{}); !errors.Is(err, upstream.ErrNotAtomic) {
			t.Errorf("update in InTx = %v, want ErrNotAtomic", err)
		}
		if _, err := tx.Delete(ctx, "Patient", existing.ID); !errors.Is(err, upstream.ErrNotAtomic) {
			t.Errorf("delete in InTx = %v, want ErrNotAtomic", err)
		}
		return upstream.ErrNotAtomic
	})
	if !errors.Is(err, upstream.ErrNotAtomic) {
		t.Fatalf("InTx = %v", err)
	}
	status, _ := fhir.OutcomeFromError(err)
	if status != http.StatusNotImplemented {
		t.Errorf("status = %d, want 501", status)
	}
	reg, _ := search.DefaultRegistry()
	q, _, _ := search.Parse(reg, []string{"Patient"}, url.Values{}, search.ParseOptions{DefaultCount: 50, MaxCount: 100})
	res, err := b.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := b.Read(ctx, "Patient", existing.ID)
	if len(res.Matches) != 1 || cur == nil || cur.VersionID != 1 {
		t.Errorf("after the refused writes: %d patients, current version %v", len(res.Matches), cur)
	}
}

// statusOf is the HTTP status the FHIR API writes for err.
func statusOf(err error) int {
	switch {
	case errors.Is(err, fhir.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, fhir.ErrGone):
		return http.StatusGone
	case errors.Is(err, fhir.ErrVersionConflict):
		return http.StatusConflict
	}
	s, _ := fhir.OutcomeFromError(err)
	return s
}

// Upstream failures become OperationOutcome errors: 502 when it is down or broken, 504 when
// it is slow; its refusals of the request keep their meaning.
func TestUpstreamErrors(t *testing.T) {
	down, _ := net.Listen("tcp", "127.0.0.1:0")
	downURL := "http://" + down.Addr().String() + "/fhir"
	down.Close()
	patient := `{"resourceType":"Patient","id":"p1","meta":{"versionId":"1","lastUpdated":"2024-01-02T03:04:05.000Z"}}`
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		base    string
		want    int
		wantMsg string
	}{
		{name: "down", base: downURL, want: 502, wantMsg: "unreachable"},
		{name: "slow", handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, want: 504, wantMsg: "in time"},
		{name: "500", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }, want: 502, wantMsg: "failed"},
		{name: "401 to fhirgate's credentials", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(401) }, want: 502, wantMsg: "credentials"},
		{name: "429", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(429) }, want: 503},
		{name: "404", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }, want: 404},
		{name: "410", handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(410) }, want: 410},
		{name: "400 keeps the reason", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"bad date"}]}`)
		}, want: 400, wantMsg: "bad date"},
		{name: "not a resource", handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `<html>login</html>`) }, want: 502},
		{name: "another resource", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, strings.Replace(patient, `"p1"`, `"p2"`, 1))
		}, want: 502},
		{name: "redirect is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://example.invalid/steal", http.StatusFound)
		}, want: 502},
		{name: "too large", handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"resourceType":"Patient","id":"p1","text":"`+strings.Repeat("x", 5000)+`"}`)
		}, want: 502, wantMsg: "larger"},
		{name: "ok", handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, patient) }, want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base
			if tc.handler != nil {
				srv := httptest.NewServer(tc.handler)
				t.Cleanup(srv.Close)
				base = srv.URL + "/fhir"
			}
			b := newBackend(t, base, func(o *upstream.Options) { o.Timeout = 300 * time.Millisecond; o.MaxResponseBytes = 4096 })
			res, err := b.Read(context.Background(), "Patient", "p1")
			if tc.want == 200 {
				if err != nil || res.VersionID != 1 || res.LastUpdated.IsZero() {
					t.Fatalf("Read = %+v, %v", res, err)
				}
				return
			}
			if got := statusOf(err); got != tc.want {
				t.Fatalf("Read error %v = status %d, want %d", err, got, tc.want)
			}
			if tc.wantMsg != "" {
				_, oo := fhir.OutcomeFromError(err)
				if len(oo.Issue) == 0 || !strings.Contains(oo.Issue[0].Diagnostics, tc.wantMsg) {
					t.Errorf("outcome %+v lacks %q", oo, tc.wantMsg)
				}
			}
		})
	}
}

// Paging links are followed only on the upstream's base; a link on another host is rebuilt on
// the configured one, a link off the base path is refused.
func TestPagingLinks(t *testing.T) {
	var hits atomic.Int64
	var next string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Query().Get("page") == "2" {
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"b"},"search":{"mode":"match"}}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":2,"link":[{"relation":"next","url":"`+next+`"}],"entry":[{"fullUrl":"x","resource":{"resourceType":"Patient","id":"a"},"search":{"mode":"match"}},{"resource":{"resourceType":"OperationOutcome"},"search":{"mode":"outcome"}}]}`)
	}))
	defer srv.Close()
	reg, _ := search.DefaultRegistry()
	for _, tc := range []struct {
		name, next string
		ok         bool
	}{
		{"same base", srv.URL + "/fhir/Patient?page=2", true},
		{"public name of the upstream", "https://fhir.example.org/fhir/Patient?page=2", true},
		{"relative", "Patient?page=2", true},
		{"off the base path", srv.URL + "/admin/Patient?page=2", false},
		{"another scheme", "file:///etc/passwd", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next = tc.next
			b := newBackend(t, srv.URL+"/fhir", nil)
			q, _, _ := search.Parse(reg, []string{"Patient"}, url.Values{}, search.ParseOptions{DefaultCount: 1, MaxCount: 10})
			res, err := b.Search(context.Background(), q)
			if err != nil || len(res.Matches) != 1 || res.Next == "" || res.Total == nil || *res.Total != 2 {
				t.Fatalf("page 1 = %+v, %v", res, err)
			}
			q.Cursor = res.Next
			res, err = b.Search(context.Background(), q)
			if tc.ok != (err == nil) {
				t.Fatalf("page 2 err = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && (len(res.Matches) != 1 || res.Matches[0].ID != "b") {
				t.Fatalf("page 2 = %+v", res)
			}
			if !tc.ok && statusOf(err) != http.StatusBadGateway {
				t.Errorf("off-base link = %d, want 502", statusOf(err))
			}
		})
	}
	// A cursor a client made up is refused before anything is sent.
	b := newBackend(t, srv.URL+"/fhir", nil)
	q, _, _ := search.Parse(reg, []string{"Patient"}, url.Values{}, search.ParseOptions{DefaultCount: 1, MaxCount: 10})
	q.Cursor = "not-a-cursor"
	before := hits.Load()
	if _, err := b.Search(context.Background(), q); statusOf(err) != http.StatusBadRequest || hits.Load() != before {
		t.Errorf("made-up cursor = %v (%d requests)", err, hits.Load()-before)
	}
}

// Totals are passed on only when trusted.
func TestTotalsUntrusted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"searchset","total":99,"entry":[]}`)
	}))
	defer srv.Close()
	reg, _ := search.DefaultRegistry()
	q, _, _ := search.Parse(reg, []string{"Patient"}, url.Values{}, search.ParseOptions{DefaultCount: 1, MaxCount: 10})
	res, err := newBackend(t, srv.URL, func(o *upstream.Options) { o.TrustTotals = false }).Search(context.Background(), q)
	if err != nil || res.Total != nil {
		t.Fatalf("untrusted total = %v, %v", res.Total, err)
	}
}

// The upstream credential: a static header, or client_credentials with the token cached.
func TestUpstreamAuth(t *testing.T) {
	const secret = "upstream-header-secret-0123456789"
	t.Run("header", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Api-Key") != secret {
				w.WriteHeader(401)
				return
			}
			_, _ = io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`)
		}))
		defer srv.Close()
		c, err := upstream.NewClient(upstream.Auth{Mode: upstream.AuthHeader, HeaderName: "x-api-key", HeaderValue: secret}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newBackend(t, srv.URL, func(o *upstream.Options) { o.Client = c }).Read(context.Background(), "Patient", "p1"); err != nil {
			t.Fatalf("with the header: %v", err)
		}
		_, err = newBackend(t, srv.URL, nil).Read(context.Background(), "Patient", "p1")
		if statusOf(err) != 502 || strings.Contains(err.Error(), secret) {
			t.Fatalf("without the header: %v", err)
		}
	})
	t.Run("client_credentials", func(t *testing.T) {
		var issued atomic.Int64
		tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, sec, ok := r.BasicAuth()
			_ = r.ParseForm()
			if !ok || id != "fhirgate" || sec != secret || r.Form.Get("grant_type") != "client_credentials" || r.Form.Get("scope") != "system/*.cruds" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(401)
				_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
				return
			}
			issued.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"up-token","token_type":"Bearer","expires_in":3600}`)
		}))
		defer tokenSrv.Close()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer up-token" {
				w.WriteHeader(401)
				return
			}
			_, _ = io.WriteString(w, `{"resourceType":"Patient","id":"p1"}`)
		}))
		defer srv.Close()
		auth := upstream.Auth{Mode: upstream.AuthClientCredentials, TokenURL: tokenSrv.URL, ClientID: "fhirgate", ClientSecret: secret, Scopes: []string{"system/*.cruds"}}
		c, err := upstream.NewClient(auth, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := newBackend(t, srv.URL, func(o *upstream.Options) { o.Client = c })
		for range 3 {
			if _, err := b.Read(context.Background(), "Patient", "p1"); err != nil {
				t.Fatal(err)
			}
		}
		if issued.Load() != 1 {
			t.Errorf("%d tokens fetched for 3 requests, want 1 (cached)", issued.Load())
		}
		auth.ClientSecret = "wrong-secret-wrong-secret-000000"
		c, _ = upstream.NewClient(auth, nil)
		_, err = newBackend(t, srv.URL, func(o *upstream.Options) { o.Client = c }).Read(context.Background(), "Patient", "p1")
		if statusOf(err) != 502 || strings.Contains(err.Error(), auth.ClientSecret) {
			t.Fatalf("with a wrong client secret: %v", err)
		}
	})
	for _, bad := range []upstream.Auth{{Mode: "header"}, {Mode: "client_credentials", TokenURL: "http://x"}, {Mode: "kerberos"}} {
		if _, err := upstream.NewClient(bad, nil); err == nil {
			t.Errorf("NewClient(%+v) accepted", bad)
		}
	}
}
