package ratelimit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
	"github.com/fhirgate/fhirgate/internal/ratelimit/limitertest"
)

// redisClient connects to the server named by FHIRGATE_TEST_REDIS, or skips the test.
func redisClient(t testing.TB) *redis.Client {
	t.Helper()
	addr := os.Getenv("FHIRGATE_TEST_REDIS")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS is not set (e.g. 127.0.0.1:6379): skipping tests that need a real Redis server")
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("FHIRGATE_TEST_REDIS=%s does not answer: %v", addr, err)
	}
	return c
}

// testPrefix is a key prefix no other test uses; its keys are deleted at cleanup.
func testPrefix(t testing.TB, c *redis.Client) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	p := "fhirgate-test:" + strings.ReplaceAll(t.Name(), "/", ".") + ":" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, "*"+p+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return p
}

// shiftTAT moves a redis_rate GCRA key back in time by ms milliseconds: the same as the clock
// moving forward for that key.
var shiftTAT = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if not v then return 0 end
local ttl = redis.call("PTTL", KEYS[1])
local nttl = ttl - tonumber(ARGV[1])
if ttl < 0 or nttl <= 0 then
  redis.call("DEL", KEYS[1])
  return 1
end
redis.call("SET", KEYS[1], string.format("%.17g", tonumber(v) - tonumber(ARGV[1]) / 1000), "PX", nttl)
return 1
`)

func TestRedisConformance(t *testing.T) {
	c := redisClient(t)
	limitertest.Run(t, func(t *testing.T) limitertest.Harness {
		prefix := testPrefix(t, c)
		return limitertest.Harness{
			Limiter: ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: prefix, Timeout: 2 * time.Second}),
			Advance: func(d time.Duration) {
				ctx := context.Background()
				iter := c.Scan(ctx, 0, "*"+prefix+"*", 100).Iterator()
				for iter.Next(ctx) {
					if err := shiftTAT.Run(ctx, c, []string{iter.Val()}, d.Milliseconds()).Err(); err != nil {
						t.Fatalf("shift %s: %v", iter.Val(), err)
					}
				}
				if err := iter.Err(); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestRedisUnreachable(t *testing.T) {
	// A port nothing listens on: the engine must report ErrUnavailable, log the outage once, and
	// back off without dialling again until the back-off has passed.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logs syncBuffer
	e := ratelimit.NewRedis(c, ratelimit.RedisOptions{
		Prefix: "unreachable:", Timeout: time.Second, Backoff: 5 * time.Second, Now: clk.Now,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), FailureMode: "closed",
	})
	l := ratelimit.Limit{Rate: 1, Period: time.Second, Burst: 1}
	for i := range 3 {
		if _, err := e.Allow(t.Context(), "k", l, 1); !errors.Is(err, ratelimit.ErrUnavailable) {
			t.Fatalf("call %d: Allow error = %v, want ErrUnavailable", i, err)
		}
	}
	if n := strings.Count(logs.String(), "redis unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "failure_mode=closed") {
		t.Errorf("outage log does not name the failure mode:\n%s", logs.String())
	}
	if err := e.Ping(t.Context()); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	stats := c.PoolStats()
	clk.Advance(6 * time.Second)
	if _, err := e.Allow(t.Context(), "k", l, 1); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("after back-off: Allow error = %v, want ErrUnavailable", err)
	}
	if c.PoolStats().Misses == stats.Misses {
		t.Errorf("after the back-off the engine did not try Redis again")
	}
}

func TestRedisRecoveryIsLogged(t *testing.T) {
	c := redisClient(t)
	prefix := testPrefix(t, c)
	var logs syncBuffer
	e := ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: prefix, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := e.Ping(t.Context()); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	if logs.String() != "" {
		t.Errorf("a healthy engine logged: %s", logs.String())
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	c := redisClient(b)
	prefix := testPrefix(b, c)
	e := ratelimit.NewRedis(c, ratelimit.RedisOptions{Prefix: prefix})
	l := ratelimit.Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Allow(b.Context(), "bench", l, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
