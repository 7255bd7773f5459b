package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newGateway builds a Gateway from the defaults changed by edit, after checking that the whole
// configuration validates.
func newGateway(t testing.TB, edit func(*config.Gateway), deps gateway.Deps) *gateway.Gateway {
	t.Helper()
	cfg := config.Default()
	if edit != nil {
		edit(&cfg.Gateway)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config does not validate: %v", err)
	}
	if deps.Now == nil {
		deps.Now = newClock().Now
	}
	g, err := gateway.New(cfg.Gateway, deps)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

// okHandler answers 200 "ok" and counts its calls.
type okHandler struct {
	mu    sync.Mutex
	calls int
}

func (h *okHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "ok")
}

func (h *okHandler) Calls() int { h.mu.Lock(); defer h.mu.Unlock(); return h.calls }

// do sends req (RemoteAddr from remote) through h and returns the recorder.
func do(h http.Handler, method, target, remote string, header map[string]string, body string) *httptest.ResponseRecorder {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, target, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	r.RemoteAddr = remote
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// outcomeCode decodes an OperationOutcome body and returns its first issue code.
func outcomeCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Fatalf("Content-Type = %q, want application/fhir+json; body %s", ct, w.Body)
	}
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code string `json:"code"`
		} `json:"issue"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("body is not an OperationOutcome: %s", w.Body)
	}
	return oo.Issue[0].Code
}

// oauthError decodes an RFC 6749 error body.
func oauthError(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json; body %s", ct, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q on an OAuth error, want no-store", cc)
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("body is not an RFC 6749 error: %s", w.Body)
	}
	return e.Error
}
