package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/gateway"
)

// tokenIdentity reads a test identity from X-Test-Identity: "client,subject,patient,verified".
func tokenIdentity(r *http.Request) gateway.Identity {
	f := strings.Split(r.Header.Get("X-Test-Identity"), ",")
	if len(f) != 4 {
		return gateway.Identity{}
	}
	return gateway.Identity{ClientID: f[0], Subject: f[1], Patient: f[2], Verified: f[3] == "verified"}
}

func rules(rs ...config.RateLimitRule) func(*config.Gateway) {
	return func(c *config.Gateway) { c.RateLimit.Rules = rs }
}

func TestRateLimitQuota(t *testing.T) {
	clk := newClock()
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "p", Groups: []string{config.GroupFHIR}, By: config.RateByPatient, Rate: 3, Period: time.Minute},
		config.RateLimitRule{Name: "ip", Groups: []string{config.GroupFHIR}, By: config.RateByIP, Rate: 100, Period: time.Minute},
	), gateway.Deps{Now: clk.Now, Identify: tokenIdentity})
	h := g.Wrap(config.GroupFHIR, &okHandler{})
	alice := map[string]string{"X-Test-Identity": "app,alice,Patient/1,verified"}
	for i := range 3 {
		w := do(h, "GET", "/fhir/Patient/1", "192.0.2.1:1", alice, "")
		if w.Code != 200 {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
		if got := w.Header().Get("RateLimit-Remaining"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: RateLimit-Remaining = %q, want %d", i+1, got, 2-i)
		}
		if got := w.Header().Get("RateLimit-Limit"); got != "3" {
			t.Errorf("RateLimit-Limit = %q, want 3 (the tightest rule)", got)
		}
		if got := w.Header().Get("RateLimit-Policy"); got != "3;w=60" {
			t.Errorf("RateLimit-Policy = %q, want 3;w=60", got)
		}
	}
	w := do(h, "GET", "/fhir/Patient/1", "192.0.2.1:1", alice, "")
	if w.Code != 429 || outcomeCode(t, w) != "throttled" {
		t.Fatalf("4th request: %d %s, want 429 throttled", w.Code, w.Body)
	}
	if got := w.Header().Get("Retry-After"); got != "20" {
		t.Errorf("Retry-After = %q, want 20 (one point per 20s)", got)
	}
	if got := w.Header().Get("RateLimit-Reset"); got != "60" {
		t.Errorf("RateLimit-Reset = %q, want 60", got)
	}
	// Another patient from the same IP is unaffected.
	if w := do(h, "GET", "/fhir/Patient/2", "192.0.2.1:1", map[string]string{"X-Test-Identity": "app,bob,Patient/2,verified"}, ""); w.Code != 200 {
		t.Errorf("other patient: %d", w.Code)
	}
	clk.Advance(20 * time.Second)
	if w := do(h, "GET", "/fhir/Patient/1", "192.0.2.1:1", alice, ""); w.Code != 200 {
		t.Errorf("after Retry-After: %d, want 200", w.Code)
	}
}

// TestRateLimitForgedToken: an attacker who sends unverified tokens naming the victim's patient
// spends only buckets keyed with the attacker's own IP.
func TestRateLimitForgedToken(t *testing.T) {
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "p", Groups: []string{config.GroupFHIR}, By: config.RateByPatient, Rate: 2, Period: time.Hour},
	), gateway.Deps{Identify: tokenIdentity})
	h := g.Wrap(config.GroupFHIR, &okHandler{})
	forged := map[string]string{"X-Test-Identity": "app,alice,Patient/1,unverified"}
	for range 5 {
		do(h, "GET", "/fhir/Patient/1", "203.0.113.66:1", forged, "")
	}
	if w := do(h, "GET", "/fhir/Patient/1", "203.0.113.66:1", forged, ""); w.Code != 429 {
		t.Fatalf("attacker's own bucket: %d, want 429", w.Code)
	}
	victims := []struct {
		name, remote, identity string
	}{
		{"verified token", "198.51.100.1:1", "app,alice,Patient/1,verified"},
		{"unverified token from the victim's IP", "198.51.100.1:1", "app,alice,Patient/1,unverified"},
		{"verified token from the attacker's IP", "203.0.113.66:1", "app,alice,Patient/1,verified"},
	}
	for _, v := range victims {
		if w := do(h, "GET", "/fhir/Patient/1", v.remote, map[string]string{"X-Test-Identity": v.identity}, ""); w.Code != 200 {
			t.Errorf("victim with %s: %d, want 200", v.name, w.Code)
		}
	}
}

func TestRateLimitIPv6Prefix(t *testing.T) {
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "ip", Groups: []string{config.GroupLogin}, By: config.RateByIP, Rate: 2, Period: time.Hour},
	), gateway.Deps{})
	h := g.Wrap(config.GroupLogin, &okHandler{})
	do(h, "POST", "/auth/login", "[2001:db8:1:2::1]:1", nil, "")
	do(h, "POST", "/auth/login", "[2001:db8:1:2::2]:1", nil, "")
	w := do(h, "POST", "/auth/login", "[2001:db8:1:2:ffff::3]:1", nil, "")
	if w.Code != 429 {
		t.Fatalf("third address in the same /64: %d, want 429", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("login 429 Content-Type = %q, want text/plain", ct)
	}
	if w := do(h, "POST", "/auth/login", "[2001:db8:1:3::1]:1", nil, ""); w.Code != 200 {
		t.Errorf("another /64: %d, want 200", w.Code)
	}
}

func TestRateLimitWeighted(t *testing.T) {
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "w", Groups: []string{config.GroupFHIR}, By: config.RateByIP, Rate: 10, Period: time.Hour, Weighted: true},
		config.RateLimitRule{Name: "flat", Groups: []string{config.GroupFHIR}, By: config.RateByGroup, Rate: 100, Period: time.Hour},
	), gateway.Deps{})
	h := g.Wrap(config.GroupFHIR, &okHandler{})
	// 2 + _include:iterate 5 = 7.
	w := do(h, "GET", "/fhir/Observation?_include:iterate=Observation:subject", "192.0.2.1:1", nil, "")
	if w.Code != 200 || w.Header().Get("RateLimit-Remaining") != "3" {
		t.Fatalf("weighted search: %d remaining %q, want 200 and 3", w.Code, w.Header().Get("RateLimit-Remaining"))
	}
	// $everything costs 20, more than the burst of 10: it spends the whole bucket at most.
	if w := do(h, "GET", "/fhir/Patient/1/$everything", "192.0.2.2:1", nil, ""); w.Code != 200 || w.Header().Get("RateLimit-Remaining") != "0" {
		t.Fatalf("$everything: %d remaining %q, want 200 and 0", w.Code, w.Header().Get("RateLimit-Remaining"))
	}
	if w := do(h, "GET", "/fhir/Patient/1", "192.0.2.2:1", nil, ""); w.Code != 429 {
		t.Fatalf("read after $everything: %d, want 429", w.Code)
	}
}

func TestRateLimitOAuthBody(t *testing.T) {
	g := newGateway(t, rules(
		config.RateLimitRule{Name: "tok", Groups: []string{config.GroupOAuth}, By: config.RateByIP, Rate: 1, Period: time.Hour},
	), gateway.Deps{})
	h := g.Wrap(config.GroupOAuth, &okHandler{})
	do(h, "POST", "/auth/token", "192.0.2.1:1", nil, "grant_type=x")
	w := do(h, "POST", "/auth/token", "192.0.2.1:1", nil, "grant_type=x")
	if w.Code != 429 || oauthError(t, w) != "temporarily_unavailable" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("token over quota: %d %s %v", w.Code, w.Body, w.Header())
	}
}

// TestRateLimitEngineDown uses the redis engine against a port where nothing listens.
func TestRateLimitEngineDown(t *testing.T) {
	g := newGateway(t, func(c *config.Gateway) {
		c.RateLimit.Engine = "redis"
		c.RateLimit.Redis.Addr = "127.0.0.1:1"
	}, gateway.Deps{})
	cases := []struct {
		group string
		want  int
	}{
		{config.GroupFHIR, 200},      // fail open by default
		{config.GroupDiscovery, 200}, // fail open by default
		{config.GroupOAuth, 503},     // fail closed by default
		{config.GroupLogin, 503},
		{config.GroupAdmin, 503},
	}
	for _, c := range cases {
		w := do(g.Wrap(c.group, &okHandler{}), "POST", "/x", "127.0.0.1:1", nil, "")
		if w.Code != c.want {
			t.Errorf("%s with Redis down: %d, want %d", c.group, w.Code, c.want)
		}
		if c.want == 503 && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s 503 without Retry-After", c.group)
		}
	}
	err := g.ReadyCheck(t.Context())
	if err == nil || !strings.Contains(err.Error(), "closed for [oauth login admin]") {
		t.Errorf("ReadyCheck = %v, want an error naming the fail-closed groups", err)
	}
	if g.Engine() != "redis" {
		t.Errorf("Engine() = %q", g.Engine())
	}
}

func TestReadyCheckMemory(t *testing.T) {
	if err := newGateway(t, nil, gateway.Deps{}).ReadyCheck(t.Context()); err != nil {
		t.Errorf("memory engine ReadyCheck = %v", err)
	}
}

// TestRateLimitRedisShared: two gateways (two instances) share one Redis bucket.
func TestRateLimitRedisShared(t *testing.T) {
	addr := os.Getenv("FHIRGATE_TEST_REDIS")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS is not set (e.g. 127.0.0.1:6379): skipping tests that need a real Redis server")
	}
	prefix := "fhirgate-test:gateway-shared:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	cleanRedis(t, addr, prefix)
	edit := func(c *config.Gateway) {
		c.RateLimit.Engine = "redis"
		c.RateLimit.Redis.Addr = addr
		c.RateLimit.Redis.KeyPrefix = prefix
		c.RateLimit.Redis.Timeout = 2 * time.Second
		c.RateLimit.Rules = []config.RateLimitRule{{Name: "tok", Groups: []string{config.GroupOAuth}, By: config.RateByIP, Rate: 3, Period: time.Hour}}
	}
	a := newGateway(t, edit, gateway.Deps{}).Wrap(config.GroupOAuth, &okHandler{})
	gb := newGateway(t, edit, gateway.Deps{})
	b := gb.Wrap(config.GroupOAuth, &okHandler{})
	if err := gb.ReadyCheck(t.Context()); err != nil {
		t.Fatalf("ReadyCheck: %v", err)
	}
	for i, h := range []http.Handler{a, b, a} {
		if w := do(h, "POST", "/auth/token", "192.0.2.1:1", nil, ""); w.Code != 200 {
			t.Fatalf("request %d: %d", i+1, w.Code)
		}
	}
	w := do(b, "POST", "/auth/token", "192.0.2.1:1", nil, "")
	if w.Code != 429 || w.Header().Get("RateLimit-Remaining") != "0" {
		t.Fatalf("4th request on the other instance: %d, want 429", w.Code)
	}
}

func TestCost(t *testing.T) {
	cases := []struct {
		method, target string
		header         map[string]string
		want           int
	}{
		{"GET", "/fhir/Patient/1", nil, 1},
		{"GET", "/fhir/metadata", nil, 1},
		{"GET", "/auth/token", nil, 1},
		{"GET", "/fhirx/Patient", nil, 1},
		{"GET", "/fhir/Patient/1/_history/2", nil, 1},
		{"GET", "/fhir/Patient/1/_history", nil, 2},
		{"GET", "/fhir/Patient/_history", nil, 4},
		{"GET", "/fhir/_history", nil, 4},
		{"PUT", "/fhir/Patient/1", nil, 2},
		{"DELETE", "/fhir/Patient/1", nil, 2},
		{"POST", "/fhir/Patient", nil, 2},
		{"POST", "/fhir/Patient", map[string]string{"If-None-Exist": "identifier=x"}, 4},
		{"DELETE", "/fhir/Patient?identifier=x", nil, 4},
		{"GET", "/fhir/Patient?name=smith", nil, 2},
		{"GET", "/fhir?_type=Patient", nil, 2},
		{"POST", "/fhir/Patient/_search", nil, 4},
		{"GET", "/fhir/Patient/1/Observation?code=x", nil, 2},
		{"POST", "/fhir", nil, 10},
		{"GET", "/fhir/Patient/1/$everything", nil, 20},
		{"GET", "/fhir/$export", nil, 20},
		{"POST", "/fhir/Patient/$validate", nil, 5},
		{"GET", "/fhir/Observation?_include=Observation:subject&_revinclude=Provenance:target", nil, 6},
		{"GET", "/fhir/Observation?_include:iterate=Observation:subject", nil, 7},
		{"GET", "/fhir/Observation?subject.name=smith", nil, 5},
		{"GET", "/fhir/Observation?subject%3APatient.name=smith", nil, 5},
		{"GET", "/fhir/Patient?_has:Observation:patient:code=1234", nil, 5},
		{"GET", "/fhir/Patient?_total=accurate", nil, 5},
		{"GET", "/fhir/Patient?_total=none", nil, 2},
		{"GET", "/fhir/Patient?_count=100", nil, 2},
		{"GET", "/fhir/Patient?_count=101", nil, 3},
		{"GET", "/fhir/Patient?_count=1000", nil, 11},
		{"GET", "/fhir/Patient?_count=999999999999", nil, gateway.MaxCost},
		{"GET", "/fhir/Patient?_sort=-date&_contained=true", nil, 5},
		{"GET", "/fhir/Patient?" + strings.Repeat("_include:iterate=x&", 40), nil, gateway.MaxCost},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.target, nil)
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got := gateway.Cost(r); got != c.want {
			t.Errorf("Cost(%s %s) = %d, want %d", c.method, c.target, got, c.want)
		}
	}
}

// cleanRedis deletes the keys under prefix when the test ends.
func cleanRedis(t testing.TB, addr, prefix string) {
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, "*"+prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
}
