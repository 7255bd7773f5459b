package authserver_test

import (
	"net/url"
	"sync"
	"testing"
)

// TestConcurrentSingleUse: of concurrent exchanges of one code, and of concurrent refreshes with
// one refresh token, exactly one succeeds.
func TestConcurrentSingleUse(t *testing.T) {
	e := newEnv(t)
	code, verifier, redirect := codeFor(t, e, "launch/patient offline_access patient/Patient.rs")
	const n = 6
	race := func(f url.Values) (ok int, rt string) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, body, _ := postForm(t, e.issuer+"/auth/token", f, "", "")
				if st == 200 {
					mu.Lock()
					ok++
					rt, _ = body["refresh_token"].(string)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return ok, rt
	}
	ok, rt := race(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {"public-app"}})
	if ok != 1 {
		t.Fatalf("%d concurrent code exchanges succeeded", ok)
	}
	if ok, _ := race(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"public-app"}}); ok > 1 {
		t.Fatalf("%d concurrent refreshes succeeded", ok)
	}
}
