package ratelimit_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
	"github.com/fhirgate/fhirgate/internal/ratelimit/limitertest"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMemoryConformance(t *testing.T) {
	limitertest.Run(t, func(t *testing.T) limitertest.Harness {
		clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		return limitertest.Harness{Limiter: ratelimit.NewMemory(clk.Now, 10_000), Advance: clk.Advance}
	})
}

func TestMemoryBoundsKeys(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := ratelimit.NewMemory(clk.Now, 6400)
	l := ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 10}
	for i := range 20_000 {
		if _, err := m.Allow(t.Context(), fmt.Sprintf("flood-%d", i), l, 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Len(); n > 6400 {
		t.Fatalf("after 20000 distinct keys Len() = %d, want at most 6400", n)
	}
}

func TestMemoryLimitChangeKeepsSpending(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := ratelimit.NewMemory(clk.Now, 10_000)
	l := ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 10}
	if _, err := m.Allow(t.Context(), "k", l, 8); err != nil {
		t.Fatal(err)
	}
	l.Burst, l.Rate = 5, 5
	r, err := m.Allow(t.Context(), "k", l, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Allowed || r.Remaining != 1 {
		t.Fatalf("after a limit change Allow = %+v, want allowed with 1 remaining", r)
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := ratelimit.NewMemory(time.Now, 100_000)
	l := ratelimit.Limit{Rate: 1_000_000_000, Period: time.Second, Burst: 1_000_000}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench-%d", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := m.Allow(b.Context(), keys[i%len(keys)], l, 1); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// TestMemoryFloodKeepsSpentBuckets: a flood of new keys cannot evict the bucket of a client that
// is being limited.
func TestMemoryFloodKeepsSpentBuckets(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := ratelimit.NewMemory(clk.Now, 6400)
	login := ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 10}
	if r, _ := m.Allow(t.Context(), "login:abuser", login, 10); !r.Allowed {
		t.Fatal("first spend refused")
	}
	flood := ratelimit.Limit{Rate: 100, Period: time.Hour, Burst: 100}
	for i := range 30_000 {
		if _, err := m.Allow(t.Context(), fmt.Sprintf("flood-%d", i), flood, 1); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := m.Allow(t.Context(), "login:abuser", login, 1); r.Allowed {
		t.Fatalf("after a flood of 30000 keys the abuser's empty bucket was reset: %+v", r)
	}
}
