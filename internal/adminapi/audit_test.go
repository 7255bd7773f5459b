package adminapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authserver"
)

type memRecorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (m *memRecorder) Record(_ context.Context, e audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	return nil
}

func (m *memRecorder) take() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.events
	m.events = nil
	return out
}

// Clients registered and keys rotated through the admin API are audited.
func TestAdminAudit(t *testing.T) {
	rec := &memRecorder{}
	ts, _ := setup(t, func(c *authserver.Config) { c.Audit = rec })
	st, m, _ := call(t, ts, token, "POST", "/admin/clients", `{"client_id":"app","redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code"],"scope":"openid patient/*.rs"}`)
	if st != 201 {
		t.Fatalf("create client: %d %v", st, m)
	}
	evs := rec.take()
	if len(evs) != 1 || evs[0].Action != audit.ActionClientRegistered || evs[0].Outcome != audit.OutcomeSuccess || evs[0].ClientID != "app" ||
		evs[0].Status != 201 || !slices.Equal(evs[0].Reasons, []string{"admin"}) || evs[0].SourceIP != "127.0.0.1" {
		t.Fatalf("registered %+v", evs)
	}
	data, _ := json.Marshal(evs)
	if strings.Contains(string(data), m["client_secret"].(string)) || strings.Contains(string(data), token) {
		t.Error("the event carries a secret")
	}
	if st, _, _ := call(t, ts, token, "POST", "/admin/clients", `{"client_id":"bad","redirect_uris":["https://x/cb#f"],"token_endpoint_auth_method":"none"}`); st != 400 {
		t.Fatalf("bad client: %d", st)
	}
	evs = rec.take()
	if len(evs) != 1 || evs[0].Outcome != audit.OutcomeDenied || evs[0].ClientID != "bad" || !slices.Equal(evs[0].Reasons, []string{"invalid_redirect_uri", "admin"}) {
		t.Errorf("refused registration %+v", evs)
	}
	st, m, _ = call(t, ts, token, "POST", "/admin/keys/rotate", `{"purpose":"id"}`)
	if st != 200 {
		t.Fatalf("rotate: %d", st)
	}
	evs = rec.take()
	if len(evs) != 1 || evs[0].Action != audit.ActionKeyRotated || evs[0].Outcome != audit.OutcomeSuccess || !slices.Equal(evs[0].Reasons, []string{"id"}) ||
		!strings.Contains(evs[0].Detail, m["kid"].(string)) {
		t.Errorf("rotated %+v", evs)
	}
}
