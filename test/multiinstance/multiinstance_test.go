package multiinstance

import (
	"context"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Two `fhirgate serve` processes on one PostgreSQL schema and one Redis act as one server.
func TestTwoInstancesActAsOne(t *testing.T) {
	e := newEnv(t, `gateway:
  rate_limit:
    enabled: true
    engine: redis
    redis: {addr: "`+redisAddrFromEnv()+`", key_prefix: "RLPREFIX"}
    rules:
      - {name: fhir-per-client, groups: [fhir], by: client, rate: 20, period: 1m}
`, nil)
	// The rate limiter's keys share the test's prefix, so cleanup finds them.
	rewriteConfig(t, e.configPath, "RLPREFIX", e.prefix+"rl:")
	a := e.start("A", freeAddr(t))
	b := e.start("B", freeAddr(t))
	ctx := context.Background()
	auditBefore := e.auditCount()

	t.Run("one rate limit for both", func(t *testing.T) {
		tok := e.clientToken(b, "limited")
		ok, limited := 0, 0
		for i := range 30 {
			in := []*instance{a, b}[i%2]
			st, err := fhirGet(ctx, in, "Patient?_count=1", tok)
			if err != nil {
				t.Fatal(err)
			}
			switch st {
			case 200:
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("status %d", st)
			}
		}
		// The client's bucket holds 20 for both instances together (it may refill by one while
		// the test runs); per-instance buckets would have let all 30 through.
		if ok < 20 || ok > 21 || limited != 30-ok {
			t.Errorf("%d allowed and %d limited of 30 requests spread over two instances, want 20 (21) allowed", ok, limited)
		}
	})

	t.Run("code issued by A redeemed at B", func(t *testing.T) {
		code, verifier := e.code(a)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.appURL + "/cb"}, "code_verifier": {verifier}, "client_id": {"app"}}
		st, m := post(t, b.url+"/auth/token", form)
		if st != 200 || m["access_token"] == nil || m["patient"] != "alice" {
			t.Fatalf("redeem at B: %d %v", st, m)
		}
		// Single use across instances: the same code at A is refused.
		if st, m := post(t, a.url+"/auth/token", form); st != 400 || m["error"] != "invalid_grant" {
			t.Errorf("second redemption at A: %d %v, want 400 invalid_grant", st, m)
		}
	})

	t.Run("refresh rotated at A and reused at B revokes the family", func(t *testing.T) {
		code, verifier := e.code(a)
		_, m := post(t, a.url+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.appURL + "/cb"}, "code_verifier": {verifier}, "client_id": {"app"}})
		rt1, _ := m["refresh_token"].(string)
		if rt1 == "" {
			t.Fatalf("no refresh token: %v", m)
		}
		st, m := post(t, a.url+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}, "client_id": {"app"}})
		if st != 200 {
			t.Fatalf("refresh at A: %d %v", st, m)
		}
		rt2, at2 := m["refresh_token"].(string), m["access_token"].(string)
		if st, _ := fhirGet(ctx, b, "Patient/alice", at2); st == http.StatusUnauthorized {
			t.Fatalf("the rotated access token is refused at B before any reuse")
		}
		if st, m := post(t, b.url+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}, "client_id": {"app"}}); st != 400 {
			t.Errorf("reuse of the rotated refresh token at B: %d %v, want 400", st, m)
		}
		if st, m := post(t, a.url+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "client_id": {"app"}}); st != 400 {
			t.Errorf("the family's newest refresh token at A after reuse: %d %v, want 400 (family revoked)", st, m)
		}
		for _, in := range []*instance{a, b} {
			if st, _ := fhirGet(ctx, in, "Patient/alice", at2); st != http.StatusUnauthorized {
				t.Errorf("the family's access token at %s after reuse: %d, want 401", in.name, st)
			}
		}
	})

	t.Run("revocation at A refused at B within a second", func(t *testing.T) {
		tok := e.backendToken(a)
		// B has checked (and cached) the token: the notice must reach its cache.
		for range 3 {
			if st, err := fhirGet(ctx, b, "Patient?_count=1", tok); err != nil || st != 200 {
				t.Fatalf("token at B before revocation: %d %v", st, err)
			}
		}
		st, m := post(t, a.url+"/auth/revoke", e.clientAuth(url.Values{"token": {tok}}, e.assertion()))
		if st != 200 {
			t.Fatalf("revoke at A: %d %v", st, m)
		}
		start := time.Now()
		for {
			st, err := fhirGet(ctx, b, "Patient?_count=1", tok)
			if err == nil && st == http.StatusUnauthorized {
				t.Logf("revoked at A, refused at B after %s", time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("B still answers %d (%v) a second after the revocation at A", st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("client assertion replayed at the other instance", func(t *testing.T) {
		as := e.assertion()
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
		if st, m := post(t, a.url+"/auth/token", e.clientAuth(form, as)); st != 200 {
			t.Fatalf("first use at A: %d %v", st, m)
		}
		if st, m := post(t, b.url+"/auth/token", e.clientAuth(url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}, as)); st != 401 && st != 400 {
			t.Errorf("replay at B: %d %v, want refused", st, m)
		}
	})

	t.Run("keys rotated at A are known at B at once", func(t *testing.T) {
		for _, purpose := range []string{"hmac", "access"} {
			req, _ := http.NewRequest(http.MethodPost, a.admin+"/admin/keys/rotate", strings.NewReader(`{"purpose":"`+purpose+`"}`))
			req.Header.Set("Authorization", "Bearer "+e.adminToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("rotate %s at A: %d", purpose, resp.StatusCode)
			}
		}
		// A code and a refresh token made with A's new HMAC secret, an access token signed with
		// A's new key: B, whose copy of the keys predates the rotation, accepts all three.
		time.Sleep(1100 * time.Millisecond) // B's copy is older than its reread threshold
		code, verifier := e.code(a)
		st, m := post(t, b.url+"/auth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.appURL + "/cb"}, "code_verifier": {verifier}, "client_id": {"app"}})
		if st != 200 {
			t.Fatalf("code made with A's new HMAC secret, redeemed at B: %d %v", st, m)
		}
		st, m = post(t, a.url+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {"app"}})
		if st != 200 {
			t.Fatalf("refresh at A: %d %v", st, m)
		}
		if st, m := post(t, b.url+"/auth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "client_id": {"app"}}); st != 200 {
			t.Errorf("refresh token from A refreshed at B: %d %v", st, m)
		}
		tok := e.backendToken(a)
		if st, err := fhirGet(ctx, b, "Patient?_count=1", tok); err != nil || st != 200 {
			t.Errorf("access token signed with A's new key, at B: %d %v", st, err)
		}
	})

	t.Run("one audit chain with events from both", func(t *testing.T) {
		before := e.auditCount()
		if st, _ := fhirGet(ctx, b, "metadata", ""); st != 200 {
			t.Fatalf("metadata: %d", st)
		}
		tok := e.backendToken(b) // a token-issued event at B
		_ = tok
		time.Sleep(500 * time.Millisecond) // the trail commits in groups
		if after := e.auditCount(); after <= before || before <= auditBefore {
			t.Errorf("audit entries: %d at start, %d, then %d after B's events; want growth from both", auditBefore, before, after)
		}
		out, err := exec.Command(fhirgateBinary(t), "audit", "verify", "--config", e.configPath, "--data-dir", t.TempDir()).CombinedOutput()
		if err != nil {
			t.Fatalf("fhirgate audit verify: %v\n%s", err, out)
		}
		t.Logf("audit verify: %s", strings.TrimSpace(string(out)))
	})

	t.Run("readyz reports database and redis", func(t *testing.T) {
		for _, in := range []*instance{a, b} {
			body := get(t, in.url+"/readyz")
			if !strings.Contains(body, "database: ok") || !strings.Contains(body, "shared state: ok (redis)") {
				t.Errorf("%s /readyz:\n%s", in.name, body)
			}
		}
	})
}

func (e *env) auditCount() int {
	var n int
	if err := e.db.QueryRow(`SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}
