package multiinstance

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/netfault"
)

type sample struct {
	at      time.Time
	status  int
	revoked bool // the request carried a revoked token
}

// A database outage during load: while the database cannot be reached every request fails with
// 503 (none succeeds, a revoked token is never accepted), /readyz says so, and the instance
// recovers by itself when the database is back. The outage is a proxy between the instance and
// the shared PostgreSQL server, severed and restored: the server itself is never stopped.
func TestDatabaseOutageDuringLoad(t *testing.T) {
	var proxy *netfault.Proxy
	e := newEnv(t, "gateway: {rate_limit: {enabled: false}}\n", func(dsn string) string {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		proxy, err = netfault.Listen(u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close() })
		q := u.Query()
		q.Set("connect_timeout", "2")
		u.RawQuery = q.Encode()
		u.Host = proxy.Addr()
		return u.String()
	})
	a := e.start("A", freeAddr(t))
	good, revoked := e.backendToken(a), e.backendToken(a)
	if st, m := post(t, a.url+"/auth/revoke", e.clientAuth(url.Values{"token": {revoked}}, e.assertion())); st != 200 {
		t.Fatalf("revoke: %d %v", st, m)
	}

	ctx, stop := context.WithCancel(context.Background())
	var mu sync.Mutex
	var samples []sample
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				tok, rev := good, w == 3
				if rev {
					tok = revoked
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				st, err := fhirGet(rctx, a, "Patient?_count=1", tok)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("request failed without an answer: %v", err)
					}
					return
				}
				mu.Lock()
				samples = append(samples, sample{at: time.Now(), status: st, revoked: rev})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	proxy.Sever()
	severed := time.Now()
	time.Sleep(time.Second)
	if body := getStatus(t, a.url+"/readyz"); !strings.HasPrefix(body, "503") || !strings.Contains(body, "database: unavailable") {
		t.Errorf("/readyz during the outage: %s", body)
	}
	time.Sleep(2 * time.Second)
	proxy.Restore()
	restored := time.Now()
	var recovered time.Duration
	for {
		if body := getStatus(t, a.url+"/readyz"); strings.HasPrefix(body, "200") {
			recovered = time.Since(restored)
			break
		}
		if time.Since(restored) > 20*time.Second {
			t.Fatalf("not ready 20s after the database came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()

	var before, during, after, unavailable, okDuring, wrong int
	lastOK := time.Time{}
	for _, s := range samples {
		switch {
		case s.revoked && s.status == http.StatusOK:
			wrong++
			t.Errorf("a revoked token was accepted at %s", s.at.Sub(severed))
		case s.status != http.StatusOK && s.status != http.StatusServiceUnavailable && !(s.revoked && s.status == http.StatusUnauthorized):
			wrong++
			t.Errorf("status %d at %s from the outage (revoked token: %v)", s.status, s.at.Sub(severed).Round(time.Millisecond), s.revoked)
		}
		// Requests answered more than 200ms into the outage and before the restore cannot have
		// reached the database.
		inOutage := s.at.After(severed.Add(200*time.Millisecond)) && s.at.Before(restored)
		switch {
		case s.at.Before(severed):
			before++
		case inOutage:
			during++
			if s.status == http.StatusOK {
				okDuring++
			}
			if s.status == http.StatusServiceUnavailable {
				unavailable++
			}
		case s.at.After(restored):
			after++
			if s.status == http.StatusOK {
				lastOK = s.at
			}
		}
	}
	t.Logf("requests: %d before, %d during the outage (%d answered 503), %d after; ready again %s after the database came back",
		before, during, unavailable, after, recovered.Round(time.Millisecond))
	if okDuring > 0 {
		t.Errorf("%d requests succeeded while the database was unreachable", okDuring)
	}
	if during == 0 || unavailable == 0 {
		t.Errorf("no requests answered during the outage (%d, %d 503)", during, unavailable)
	}
	if lastOK.IsZero() {
		t.Errorf("no request succeeded after the database came back")
	}
	if st, _ := fhirGet(context.Background(), a, "Patient?_count=1", revoked); st != http.StatusUnauthorized {
		t.Errorf("revoked token after the outage: %d, want 401", st)
	}
}

// getStatus returns "STATUS body".
func getStatus(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strconv.Itoa(resp.StatusCode) + " " + strings.TrimSpace(string(b))
}
