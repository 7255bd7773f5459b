package gateway_test

import (
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

type rejects struct {
	mu  sync.Mutex
	got []string
}

func (r *rejects) hook(group, rule string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, group+"/"+rule)
}

func (r *rejects) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestOnRejectNamesGroupAndRule(t *testing.T) {
	rec := &rejects{}
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "tight", Groups: []string{config.GroupOAuth}, By: config.RateByIP, Rate: 2, Period: time.Minute},
	), gateway.Deps{OnReject: rec.hook})
	h := g.Wrap(config.GroupOAuth, &okHandler{})
	for range 2 {
		if w := do(h, "POST", "/auth/token", "192.0.2.9:1", nil, ""); w.Code != 200 {
			t.Fatalf("admitted request: %d", w.Code)
		}
	}
	// Admitted requests are not reported.
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("OnReject called for admitted requests: %v", got)
	}
	if w := do(h, "POST", "/auth/token", "192.0.2.9:1", nil, ""); w.Code != 429 {
		t.Fatalf("3rd request: %d", w.Code)
	}
	if got := rec.list(); len(got) != 1 || got[0] != "oauth/tight" {
		t.Fatalf("OnReject = %v, want [oauth/tight]", got)
	}
}

func TestOnRejectEngineDown(t *testing.T) {
	rec := &rejects{}
	g := newGateway(t, func(c *config.Gateway) {
		c.RateLimit.Engine = "redis"
		c.RateLimit.Redis.Addr = "127.0.0.1:1"
	}, gateway.Deps{OnReject: rec.hook})
	// fhir fails open: nothing refused, nothing reported.
	if w := do(g.Wrap(config.GroupFHIR, &okHandler{}), "GET", "/fhir/x", "127.0.0.1:1", nil, ""); w.Code != 200 {
		t.Fatalf("fhir: %d", w.Code)
	}
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("fail-open reported: %v", got)
	}
	if w := do(g.Wrap(config.GroupOAuth, &okHandler{}), "POST", "/auth/token", "127.0.0.1:1", nil, ""); w.Code != 503 {
		t.Fatalf("oauth: %d", w.Code)
	}
	if got := rec.list(); len(got) != 1 || got[0] != "oauth/"+gateway.RejectEngineUnavailable {
		t.Fatalf("OnReject = %v", got)
	}
}

func TestNoOnRejectHook(t *testing.T) {
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "tight", Groups: []string{config.GroupOAuth}, By: config.RateByIP, Rate: 1, Period: time.Minute},
	), gateway.Deps{})
	h := g.Wrap(config.GroupOAuth, &okHandler{})
	do(h, "POST", "/auth/token", "192.0.2.9:1", nil, "")
	if w := do(h, "POST", "/auth/token", "192.0.2.9:1", nil, ""); w.Code != 429 {
		t.Fatalf("without a hook: %d", w.Code)
	}
}
