package limitertest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/ratelimit"
)

// Harness is one fresh engine for one test, with its own key space.
type Harness struct {
	// Limiter is the engine under test.
	Limiter ratelimit.Limiter
	// Advance moves the engine's notion of time forward by d for every key of this harness.
	Advance func(d time.Duration)
}

// Run runs the conformance suite; newHarness is called once per test case.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	perMinute5 := ratelimit.Limit{Rate: 5, Period: time.Minute, Burst: 5}
	ctx := context.Background()

	t.Run("BurstThenDeny", func(t *testing.T) {
		h := newHarness(t)
		for i := range 5 {
			r := allow(t, h, "k", perMinute5, 1)
			if !r.Allowed || r.Remaining != 4-i {
				t.Fatalf("call %d: Allow = %+v, want allowed with %d remaining", i+1, r, 4-i)
			}
			if r.RetryAfter != 0 {
				t.Errorf("call %d: RetryAfter = %v on an allowed call, want 0", i+1, r.RetryAfter)
			}
		}
		r := allow(t, h, "k", perMinute5, 1)
		if r.Allowed || r.Remaining != 0 {
			t.Fatalf("6th call: Allow = %+v, want denied with 0 remaining", r)
		}
		// One point refills every 12s.
		if r.RetryAfter <= 0 || r.RetryAfter > 12*time.Second {
			t.Errorf("6th call: RetryAfter = %v, want in (0, 12s]", r.RetryAfter)
		}
		if r.ResetAfter < 48*time.Second || r.ResetAfter > 60*time.Second {
			t.Errorf("6th call: ResetAfter = %v, want in [48s, 60s]", r.ResetAfter)
		}
		if r.Limit != perMinute5 {
			t.Errorf("Limit = %v, want %v", r.Limit, perMinute5)
		}
	})

	t.Run("ResetAfterOnePoint", func(t *testing.T) {
		h := newHarness(t)
		r := allow(t, h, "k", perMinute5, 1)
		if r.ResetAfter < 11*time.Second || r.ResetAfter > 12*time.Second {
			t.Errorf("ResetAfter = %v after spending 1 of 5/min, want about 12s", r.ResetAfter)
		}
	})

	t.Run("CostWeighted", func(t *testing.T) {
		h := newHarness(t)
		l := ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 10}
		steps := []struct {
			cost      int
			allowed   bool
			remaining int
		}{
			{4, true, 6},
			{7, false, 6}, // a denied call spends nothing
			{6, true, 0},
			{1, false, 0},
		}
		for i, s := range steps {
			r := allow(t, h, "k", l, s.cost)
			if r.Allowed != s.allowed || r.Remaining != s.remaining {
				t.Fatalf("step %d: Allow(cost %d) = %+v, want allowed=%v remaining=%d", i, s.cost, r, s.allowed, s.remaining)
			}
		}
	})

	t.Run("RetryAfterScalesWithCost", func(t *testing.T) {
		h := newHarness(t)
		l := ratelimit.Limit{Rate: 6, Period: time.Minute, Burst: 6}
		allow(t, h, "k", l, 6)
		r := allow(t, h, "k", l, 3)
		if r.Allowed || r.RetryAfter < 29*time.Second || r.RetryAfter > 30*time.Second {
			t.Fatalf("Allow(cost 3) on an empty 6/min bucket = %+v, want denied, RetryAfter about 30s", r)
		}
	})

	t.Run("Refill", func(t *testing.T) {
		h := newHarness(t)
		for range 5 {
			allow(t, h, "k", perMinute5, 1)
		}
		h.Advance(12 * time.Second)
		if r := allow(t, h, "k", perMinute5, 1); !r.Allowed {
			t.Fatalf("after 12s: Allow = %+v, want allowed (one point refilled)", r)
		}
		if r := allow(t, h, "k", perMinute5, 1); r.Allowed {
			t.Fatalf("after 12s, second call: Allow = %+v, want denied", r)
		}
		h.Advance(time.Hour)
		for i := range 5 {
			if r := allow(t, h, "k", perMinute5, 1); !r.Allowed {
				t.Fatalf("after an hour, call %d: Allow = %+v, want allowed (bucket full, not over-full)", i+1, r)
			}
		}
		if r := allow(t, h, "k", perMinute5, 1); r.Allowed {
			t.Fatalf("after an hour, 6th call: Allow = %+v, want denied: refill stops at the burst", r)
		}
	})

	t.Run("KeysIsolated", func(t *testing.T) {
		h := newHarness(t)
		for range 5 {
			allow(t, h, "a", perMinute5, 1)
		}
		if r := allow(t, h, "a", perMinute5, 1); r.Allowed {
			t.Fatalf("key a exhausted: Allow = %+v, want denied", r)
		}
		if r := allow(t, h, "b", perMinute5, 1); !r.Allowed || r.Remaining != 4 {
			t.Fatalf("key b: Allow = %+v, want allowed with 4 remaining", r)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		h := newHarness(t)
		cases := []struct {
			name string
			l    ratelimit.Limit
			cost int
		}{
			{"zero cost", perMinute5, 0},
			{"negative cost", perMinute5, -1},
			{"cost above burst", perMinute5, 6},
			{"zero limit", ratelimit.Limit{}, 1},
			{"zero burst", ratelimit.Limit{Rate: 1, Period: time.Second}, 1},
			{"zero period", ratelimit.Limit{Rate: 1, Burst: 1}, 1},
		}
		for _, c := range cases {
			if _, err := h.Limiter.Allow(ctx, "k", c.l, c.cost); !errors.Is(err, ratelimit.ErrInvalid) {
				t.Errorf("%s: Allow(%v, %d) error = %v, want ErrInvalid", c.name, c.l, c.cost, err)
			}
		}
	})

	t.Run("ConcurrentSpendIsExact", func(t *testing.T) {
		h := newHarness(t)
		l := ratelimit.Limit{Rate: 1, Period: time.Hour, Burst: 50}
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				for range 20 {
					r, err := h.Limiter.Allow(ctx, "shared", l, 1)
					if err != nil {
						errs <- err
						return
					}
					if r.Allowed {
						allowed.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := allowed.Load(); got != 50 {
			t.Fatalf("160 concurrent calls on a burst of 50 allowed %d, want exactly 50", got)
		}
	})
}

func allow(t *testing.T, h Harness, key string, l ratelimit.Limit, cost int) ratelimit.Result {
	t.Helper()
	r, err := h.Limiter.Allow(context.Background(), key, l, cost)
	if err != nil {
		t.Fatalf("Allow(%q, %v, %d): %v", key, l, cost, err)
	}
	return r
}
