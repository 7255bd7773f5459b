package sharedstate_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/netfault"
	"github.com/fhirgate/fhirgate/internal/sharedstate"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// redisAddr is FHIRGATE_TEST_REDIS, or the test is skipped.
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("FHIRGATE_TEST_REDIS")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS is not set (e.g. 127.0.0.1:6379): skipping tests that need a real Redis server")
	}
	return addr
}

// newClient is a shared-state client on addr with a key prefix no other test uses (its keys are
// deleted at cleanup).
func newClient(t testing.TB, addr, prefix string) *sharedstate.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: 1, DialTimeout: time.Second, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return sharedstate.NewClient(rdb, prefix, 200*time.Millisecond, nil)
}

func testPrefix(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "fhirgate-test:" + strings.ReplaceAll(t.Name(), "/", ".") + ":" + hex.EncodeToString(b) + ":"
}

func openStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// counting counts the store's revocation lookups.
type counting struct {
	sharedstate.Revoker
	n atomic.Int64
}

func (c *counting) Revoked(ctx context.Context, jti string) (bool, error) {
	c.n.Add(1)
	return c.Revoker.Revoked(ctx, jti)
}

func run(t *testing.T, r *sharedstate.Revocations) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
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

// Two instances (two caches on one store): a revocation committed at A reaches B's cache through
// pub/sub well within a second, although B's "not revoked" answer was cached for a minute.
func TestRevocationReachesOtherInstance(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix(t)
	st := openStore(t)
	dbA, dbB := &counting{Revoker: st}, &counting{Revoker: st}
	a := sharedstate.NewRevocations(dbA, newClient(t, addr, prefix), time.Minute)
	b := sharedstate.NewRevocations(dbB, newClient(t, addr, prefix), time.Minute)
	st.OnRevocation(a.Notify) // the store of instance A tells A's cache
	run(t, a)
	run(t, b)
	eventually(t, 3*time.Second, "subscriptions", func() bool { return a.Cached() && b.Cached() })
	ctx := context.Background()

	for range 3 {
		if rev, err := b.Revoked(ctx, "tok-1"); err != nil || rev {
			t.Fatalf("B Revoked = %v, %v; want false", rev, err)
		}
	}
	if n := dbB.n.Load(); n != 1 {
		t.Errorf("B asked the store %d times for 3 checks, want 1 (cached)", n)
	}
	if err := st.RevokeJTI(ctx, "tok-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Second, "B refuses the revoked token", func() bool {
		rev, err := b.Revoked(ctx, "tok-1")
		return err == nil && rev
	})
	t.Logf("revocation at A refused at B after %s", took)
	// A revoked answer is kept too.
	before := dbB.n.Load()
	if rev, _ := b.Revoked(ctx, "tok-1"); !rev || dbB.n.Load() != before {
		t.Errorf("revoked answer not cached: rev=%v lookups %d→%d", rev, before, dbB.n.Load())
	}
	// Other tokens stay unrevoked.
	if rev, err := b.Revoked(ctx, "tok-2"); err != nil || rev {
		t.Errorf("tok-2 Revoked = %v, %v", rev, err)
	}
}

// Revocations inside an OAuth transaction announce at commit, not before; a rolled-back one never.
func TestRevocationHookAtCommit(t *testing.T) {
	st := openStore(t)
	var calls atomic.Int64
	st.OnRevocation(func() { calls.Add(1) })
	ctx := context.Background()
	txCtx, err := st.BeginOAuthTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeJTI(txCtx, "in-tx", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Fatal("hook called before the commit")
	}
	if err := st.CommitOAuthTx(txCtx); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("hook calls after commit = %d, want 1", calls.Load())
	}
	txCtx, _ = st.BeginOAuthTx(ctx)
	_ = st.RevokeJTI(txCtx, "rolled-back", time.Now().Add(time.Hour))
	_ = st.RollbackOAuthTx(txCtx)
	if calls.Load() != 1 {
		t.Errorf("hook called for a rolled-back revocation")
	}
	if err := st.RevokeJTI(ctx, "direct", time.Now().Add(time.Hour)); err != nil || calls.Load() != 2 {
		t.Errorf("direct revocation: err %v, calls %d, want 2", err, calls.Load())
	}
}

// Without a live subscription the cache is not used: every check asks the store, so a
// revocation that no notice announced is still seen at once.
func TestRevocationsWithoutRedisAskTheStore(t *testing.T) {
	st := openStore(t)
	db := &counting{Revoker: st}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: 0, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	r := sharedstate.NewRevocations(db, sharedstate.NewClient(rdb, "x:", 100*time.Millisecond, nil), time.Minute)
	run(t, r)
	ctx := context.Background()
	for range 3 {
		if rev, err := r.Revoked(ctx, "t"); err != nil || rev {
			t.Fatalf("Revoked = %v, %v", rev, err)
		}
	}
	if err := st.RevokeJTI(ctx, "t", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rev, err := r.Revoked(ctx, "t"); err != nil || !rev {
		t.Errorf("after revocation Revoked = %v, %v; want true at once", rev, err)
	}
	if r.Cached() || db.n.Load() != 4 {
		t.Errorf("cached=%v lookups=%d; want no cache, 4 lookups", r.Cached(), db.n.Load())
	}
	r.Notify() // publishing fails; logged, no panic
}

// When the connection to Redis breaks, the cache is dropped and bypassed; once Redis is back the
// subscription is restored by itself.
func TestRevocationsRedisOutage(t *testing.T) {
	addr := redisAddr(t)
	proxy, err := netfault.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	prefix := testPrefix(t)
	st := openStore(t)
	db := &counting{Revoker: st}
	b := sharedstate.NewRevocations(db, newClient(t, proxy.Addr(), prefix), time.Minute)
	a := sharedstate.NewRevocations(st, newClient(t, addr, prefix), time.Minute)
	st.OnRevocation(a.Notify)
	run(t, b)
	eventually(t, 3*time.Second, "subscription", b.Cached)
	ctx := context.Background()
	if rev, _ := b.Revoked(ctx, "t"); rev {
		t.Fatal("revoked before revocation")
	}
	proxy.Sever()
	eventually(t, 3*time.Second, "outage noticed", func() bool { return !b.Cached() })
	// Revoked while B cannot hear the notice: B asks the store and refuses at once.
	if err := st.RevokeJTI(ctx, "t", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rev, err := b.Revoked(ctx, "t"); err != nil || !rev {
		t.Errorf("during the outage Revoked = %v, %v; want true", rev, err)
	}
	proxy.Restore()
	eventually(t, 5*time.Second, "subscription restored", b.Cached)
	if rev, err := b.Revoked(ctx, "t"); err != nil || !rev {
		t.Errorf("after the outage Revoked = %v, %v; want true", rev, err)
	}
}

func TestJTIReplay(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix(t)
	st := openStore(t)
	a := sharedstate.NewJTIs(st, newClient(t, addr, prefix))
	b := sharedstate.NewJTIs(st, newClient(t, addr, prefix))
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(5 * time.Minute)
	if err := a.UseAssertionJTI(ctx, "client j1", exp, now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := b.UseAssertionJTI(ctx, "client j1", exp, now); !errors.Is(err, sqlstore.ErrOAuthExists) {
		t.Errorf("replay at another instance = %v, want ErrOAuthExists", err)
	}
	// Redis lost its keys (restart): the store still refuses the replay.
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	if err := b.UseAssertionJTI(ctx, "client j1", exp, now); !errors.Is(err, sqlstore.ErrOAuthExists) {
		t.Errorf("replay after Redis lost its keys = %v, want ErrOAuthExists", err)
	}
	// Redis down: the store decides.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: 0, DialTimeout: 100 * time.Millisecond})
	defer down.Close()
	c := sharedstate.NewJTIs(st, sharedstate.NewClient(down, prefix, 100*time.Millisecond, nil))
	if err := c.UseAssertionJTI(ctx, "client j2", exp, now); err != nil {
		t.Errorf("first use with Redis down: %v", err)
	}
	if err := c.UseAssertionJTI(ctx, "client j2", exp, now); !errors.Is(err, sqlstore.ErrOAuthExists) {
		t.Errorf("replay with Redis down = %v, want ErrOAuthExists", err)
	}
	// And a jti first seen while Redis was down is refused once Redis is back.
	if err := a.UseAssertionJTI(ctx, "client j2", exp, now); !errors.Is(err, sqlstore.ErrOAuthExists) {
		t.Errorf("replay of a jti recorded during the outage = %v, want ErrOAuthExists", err)
	}
}

func TestLoginThrottleShared(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix(t)
	cfg := config.LoginThrottle{MaxFailuresPerAccount: 3, MaxFailuresPerIP: 5, Window: 400 * time.Millisecond}
	a := sharedstate.NewLoginThrottle(newClient(t, addr, prefix), cfg)
	b := sharedstate.NewLoginThrottle(newClient(t, addr, prefix), cfg)
	ctx := context.Background()
	reserve := func(th *sharedstate.LoginThrottle, user, ip string) bool {
		t.Helper()
		ok, err := th.Reserve(ctx, user, ip)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// Three failures spread over two instances use up the account's limit at both.
	for i, th := range []*sharedstate.LoginThrottle{a, b, a} {
		if !reserve(th, "alice", "10.0.0.1") {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if reserve(b, "alice", "10.0.0.2") || reserve(a, "alice", "10.0.0.3") {
		t.Error("fourth attempt on the account allowed")
	}
	// Another account from the first IP: the IP has 3 of 5.
	if !reserve(b, "bob", "10.0.0.1") {
		t.Error("bob refused")
	}
	if err := a.Succeed(ctx, "bob", "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	// Window over: allowed again.
	time.Sleep(cfg.Window + 50*time.Millisecond)
	if !reserve(b, "alice", "10.0.0.1") {
		t.Error("alice refused after the window")
	}
	// The IP limit across accounts.
	for i := range 5 {
		if !reserve(a, "user"+string(rune('a'+i)), "10.9.9.9") {
			t.Fatalf("IP attempt %d refused", i+1)
		}
	}
	if reserve(b, "other", "10.9.9.9") {
		t.Error("sixth attempt from the IP allowed")
	}
	// Redis down: an error, so the caller falls back.
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: 0, DialTimeout: 100 * time.Millisecond})
	defer down.Close()
	d := sharedstate.NewLoginThrottle(sharedstate.NewClient(down, prefix, 100*time.Millisecond, nil), cfg)
	if _, err := d.Reserve(ctx, "alice", "1.1.1.1"); err == nil {
		t.Error("Reserve with Redis down: no error")
	}
}

// drops counts the drop calls of one scope.
type drops struct{ n atomic.Int64 }

func (d *drops) drop()        { d.n.Add(1) }
func (d *drops) count() int64 { return d.n.Load() }

func runInvalidations(t *testing.T, n *sharedstate.Invalidations) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { n.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// Two instances: a notice published at A drops the watching cache of its scope at B within the
// pub/sub delivery time, and only that scope's.
func TestInvalidationReachesOtherInstance(t *testing.T) {
	addr := redisAddr(t)
	prefix := testPrefix(t)
	a := sharedstate.NewInvalidations(newClient(t, addr, prefix), "consents", "consent")
	b := sharedstate.NewInvalidations(newClient(t, addr, prefix), "consents", "consent")
	// Another deployment on the same Redis (another prefix) hears nothing.
	other := sharedstate.NewInvalidations(newClient(t, addr, testPrefix(t)), "consents", "consent")
	var bDefault, bTenant, aDefault, otherDefault drops
	b.Watch("fhir", bDefault.drop)
	b.Watch("t/x", bTenant.drop)
	a.Watch("fhir", aDefault.drop)
	other.Watch("fhir", otherDefault.drop)
	for _, n := range []*sharedstate.Invalidations{a, b, other} {
		runInvalidations(t, n)
	}
	eventually(t, 3*time.Second, "subscriptions", func() bool { return a.Live() && b.Live() && other.Live() })
	// Going live dropped everything once.
	if bDefault.count() == 0 || bTenant.count() == 0 {
		t.Errorf("going live did not drop the caches: %d %d", bDefault.count(), bTenant.count())
	}
	d0, t0, a0, o0 := bDefault.count(), bTenant.count(), aDefault.count(), otherDefault.count()

	start := time.Now()
	a.Publish(context.Background(), "fhir")
	eventually(t, time.Second, "B drops the default scope", func() bool { return bDefault.count() > d0 })
	t.Logf("notice published at A dropped B's cache after %s", time.Since(start))
	eventually(t, time.Second, "A hears its own notice", func() bool { return aDefault.count() > a0 })
	// A notice for another scope, then one B cannot place: neither touches B's default scope.
	a.Publish(context.Background(), "t/x")
	eventually(t, time.Second, "B drops the tenant scope", func() bool { return bTenant.count() > t0 })
	a.Publish(context.Background(), "t/unknown")
	time.Sleep(100 * time.Millisecond)
	if got := bDefault.count(); got != d0+1 {
		t.Errorf("B's default scope dropped %d times, want 1", got-d0)
	}
	if otherDefault.count() != o0 {
		t.Error("a deployment with another key prefix heard the notice")
	}
}

// Without Redis the channel is never live (caches must read through) and publishing fails
// quietly; a nil channel (no Redis configured) is never live either.
func TestInvalidationsWithoutRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: 0, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	n := sharedstate.NewInvalidations(sharedstate.NewClient(rdb, "x:", 100*time.Millisecond, nil), "consents", "consent")
	var d drops
	n.Watch("fhir", d.drop)
	runInvalidations(t, n)
	time.Sleep(300 * time.Millisecond)
	if n.Live() {
		t.Error("live without Redis")
	}
	n.Publish(context.Background(), "fhir") // logged, no panic
	var none *sharedstate.Invalidations
	if none.Live() {
		t.Error("nil channel live")
	}
	none.Publish(context.Background(), "fhir")
}

// When the connection to Redis breaks, B stops being live and drops its caches; a notice sent
// during the outage is lost, which is why B's caches are not trusted until it is live again; then
// notices reach it again.
func TestInvalidationsRedisOutage(t *testing.T) {
	addr := redisAddr(t)
	proxy, err := netfault.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	prefix := testPrefix(t)
	a := sharedstate.NewInvalidations(newClient(t, addr, prefix), "consents", "consent")
	b := sharedstate.NewInvalidations(newClient(t, proxy.Addr(), prefix), "consents", "consent")
	var d drops
	b.Watch("fhir", d.drop)
	runInvalidations(t, a)
	runInvalidations(t, b)
	eventually(t, 3*time.Second, "subscriptions", func() bool { return a.Live() && b.Live() })
	before := d.count()
	proxy.Sever()
	eventually(t, 3*time.Second, "outage noticed", func() bool { return !b.Live() })
	if d.count() == before {
		t.Error("going down did not drop B's cache")
	}
	proxy.Restore()
	eventually(t, 5*time.Second, "subscription restored", b.Live)
	before = d.count()
	a.Publish(context.Background(), "fhir")
	eventually(t, time.Second, "notice after the outage", func() bool { return d.count() > before })
}
