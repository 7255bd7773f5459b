package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/netfault"
	"github.com/fhirgate/fhirgate/internal/sharedstate"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// searchCounting counts the backend's searches (Consent lookups that missed the cache).
type searchCounting struct {
	backend.Backend
	n atomic.Int64
}

func (s *searchCounting) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	s.n.Add(1)
	return s.Backend.Search(ctx, q)
}

func consentTestStore(t *testing.T) backend.Backend {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func consentRegistry(t *testing.T) *search.Registry {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// runNotices runs n's subscription for the test.
func runNotices(t *testing.T, n *sharedstate.Invalidations) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

const denyConsent = `{"resourceType":"Consent","status":"active",
	"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
	"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
	"patient":{"reference":"Patient/p1"},"provision":{"type":"deny"}}`

// On one instance (no Redis) the cache is used; with Redis configured but its notices not heard,
// it is not: every lookup reads the backend, so a Consent written at another instance binds at
// once (fail closed).
func TestConsentCacheTrustedOnlyWithNotices(t *testing.T) {
	reg := consentRegistry(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		shared   func(t *testing.T) *sharedstate.Invalidations
		searches int64
	}{
		{"one instance", func(*testing.T) *sharedstate.Invalidations { return nil }, 1},
		{"redis unreachable", func(t *testing.T) *sharedstate.Invalidations {
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: 0, DialTimeout: 100 * time.Millisecond})
			t.Cleanup(func() { _ = rdb.Close() })
			n := sharedstate.NewInvalidations(sharedstate.NewClient(rdb, "x:", 100*time.Millisecond, nil), "consents", "consent")
			runNotices(t, n)
			return n
		}, 3},
		{"subscription not running", func(t *testing.T) *sharedstate.Invalidations {
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
			t.Cleanup(func() { _ = rdb.Close() })
			return sharedstate.NewInvalidations(sharedstate.NewClient(rdb, "x:", 0, nil), "consents", "consent")
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &searchCounting{Backend: consentTestStore(t)}
			c := newConsentStore(b, reg, time.Minute)
			c.share(tc.shared(t), consentScope(""))
			for range 3 {
				if got, err := c.PatientConsents(ctx, "p1"); err != nil || len(got) != 0 {
					t.Fatalf("PatientConsents = %d, %v", len(got), err)
				}
			}
			if n := b.n.Load(); n != tc.searches {
				t.Errorf("%d backend searches for 3 lookups, want %d", n, tc.searches)
			}
			// A Consent written behind this store's back (another instance).
			if _, _, err := b.Create(ctx, "Consent", []byte(denyConsent), backend.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			got, err := c.PatientConsents(ctx, "p1")
			if err != nil {
				t.Fatal(err)
			}
			if want := int(tc.searches / 3); len(got) != want { // cached: still none; read through: the new one
				t.Errorf("after a write elsewhere %d Consents, want %d", len(got), want)
			}
		})
	}
}

func consentTestPrefix(t *testing.T) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "fhirgate-test:" + strings.ReplaceAll(t.Name(), "/", ".") + ":" + hex.EncodeToString(b) + ":"
}

// consentNotices is a running Consent notice channel on the Redis at addr.
func consentNotices(t *testing.T, addr, prefix string) *sharedstate.Invalidations {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialTimeout: time.Second, ReadTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	n := sharedstate.NewInvalidations(sharedstate.NewClient(rdb, prefix, 200*time.Millisecond, nil), "consents", "consent")
	runNotices(t, n)
	return n
}

func testRedis(t *testing.T) string {
	addr := os.Getenv("FHIRGATE_TEST_REDIS")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS is not set (e.g. 127.0.0.1:6379)")
	}
	return addr
}

// Two instances on one backend: a Consent written through A's FHIR API (directly or in a
// transaction) is seen by B's next lookup within the notice delivery time although B cached the
// patient's Consents for a minute; a write to a tenant's Consents leaves B's default cache alone.
func TestConsentWriteReachesOtherInstance(t *testing.T) {
	addr := testRedis(t)
	prefix := consentTestPrefix(t)
	reg := consentRegistry(t)
	ctx := context.Background()
	db := &searchCounting{Backend: consentTestStore(t)}
	nA, nB := consentNotices(t, addr, prefix), consentNotices(t, addr, prefix)
	a, bStore := newConsentStore(db, reg, time.Minute), newConsentStore(db, reg, time.Minute)
	a.share(nA, consentScope(""))
	bStore.share(nB, consentScope(""))
	tenantA := newConsentStore(db, reg, time.Minute)
	tenantA.share(nA, consentScope("x"))
	waitFor(t, 3*time.Second, "subscriptions", func() bool { return nA.Live() && nB.Live() })

	lookupB := func() int {
		t.Helper()
		got, err := bStore.PatientConsents(ctx, "p1")
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	for range 2 {
		if lookupB() != 0 {
			t.Fatal("Consents before any was written")
		}
	}
	cached := db.n.Load()
	if lookupB(); db.n.Load() != cached {
		t.Fatal("B does not cache while its subscription is live")
	}
	// The tenant's write goes to the same database here, but B's default-base cache is not told.
	if _, _, err := tenantA.watch(db).Create(ctx, "Consent", []byte(denyConsent), backend.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := lookupB(); n != 0 || db.n.Load() != cached {
		t.Errorf("a tenant's Consent write dropped the default base's cache at B (%d Consents)", n)
	}
	var id string
	start := time.Now()
	res, _, err := a.watch(db).Create(ctx, "Consent", []byte(denyConsent), backend.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id = res.ID
	waitFor(t, time.Second, "B sees the Consent written at A", func() bool { return lookupB() == 2 })
	t.Logf("Consent written at A seen at B after %s", time.Since(start))
	// Withdrawn at A inside a transaction: announced after the commit.
	err = a.watch(db).InTx(ctx, func(tx backend.Backend) error {
		_, err := tx.Delete(ctx, "Consent", id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "B sees the withdrawal", func() bool { return lookupB() == 1 })
}

// B loses Redis after caching a patient's Consents: it drops the cache and reads the backend for
// every lookup, so a Consent written at A meanwhile (whose notice B cannot hear) binds at B at
// once; when Redis is back B caches again.
func TestConsentCacheBypassedDuringOutage(t *testing.T) {
	addr := testRedis(t)
	proxy, err := netfault.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	prefix := consentTestPrefix(t)
	reg := consentRegistry(t)
	ctx := context.Background()
	db := &searchCounting{Backend: consentTestStore(t)}
	nA, nB := consentNotices(t, addr, prefix), consentNotices(t, proxy.Addr(), prefix)
	a, b := newConsentStore(db, reg, time.Minute), newConsentStore(db, reg, time.Minute)
	a.share(nA, consentScope(""))
	b.share(nB, consentScope(""))
	waitFor(t, 3*time.Second, "subscriptions", func() bool { return nA.Live() && nB.Live() })
	lookupB := func() int {
		t.Helper()
		got, err := b.PatientConsents(ctx, "p1")
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	lookupB()
	cached := db.n.Load()
	if lookupB() != 0 || db.n.Load() != cached {
		t.Fatal("B does not cache while its subscription is live")
	}
	proxy.Sever()
	waitFor(t, 3*time.Second, "outage noticed", func() bool { return !nB.Live() })
	if _, _, err := a.watch(db).Create(ctx, "Consent", []byte(denyConsent), backend.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	before := db.n.Load()
	for range 2 {
		if n := lookupB(); n != 1 {
			t.Fatalf("during the outage B sees %d Consents, want 1", n)
		}
	}
	if got := db.n.Load() - before; got != 2 {
		t.Errorf("during the outage B searched the backend %d times for 2 lookups, want 2", got)
	}
	proxy.Restore()
	waitFor(t, 5*time.Second, "subscription restored", nB.Live)
	lookupB()
	cached = db.n.Load()
	if lookupB() != 1 || db.n.Load() != cached {
		t.Error("B does not cache again after the outage")
	}
}
