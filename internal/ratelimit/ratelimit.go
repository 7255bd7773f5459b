package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limit is a bucket: Burst points at most, refilled at Rate points per Period.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// Valid reports whether l can be enforced.
func (l Limit) Valid() bool { return l.Rate > 0 && l.Period > 0 && l.Burst > 0 }

// Interval is the time one point takes to refill.
func (l Limit) Interval() time.Duration { return l.Period / time.Duration(l.Rate) }

func (l Limit) String() string { return fmt.Sprintf("%d/%s burst %d", l.Rate, l.Period, l.Burst) }

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed reports whether the cost was spent; a denied call spends nothing.
	Allowed bool
	// Limit is the limit the call was checked against.
	Limit Limit
	// Remaining is the whole number of points left in the bucket after the call.
	Remaining int
	// RetryAfter is how long until the same cost would be allowed; 0 when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the bucket is full again.
	ResetAfter time.Duration
}

// Limiter spends points from named buckets. Implementations are safe for concurrent use.
type Limiter interface {
	// Allow spends cost points from the bucket key under limit l, if the bucket holds them.
	// A cost above l.Burst or below 1, or an invalid l, returns an error wrapping ErrInvalid.
	// An engine that cannot reach its store returns an error wrapping ErrUnavailable.
	Allow(ctx context.Context, key string, l Limit, cost int) (Result, error)
}

// Pinger is implemented by engines that depend on a server; Ping reports whether it answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Errors returned by the engines, wrapped with detail.
var (
	ErrInvalid     = errors.New("ratelimit: invalid limit or cost")
	ErrUnavailable = errors.New("ratelimit: engine unavailable")
)

func check(l Limit, cost int) error {
	if !l.Valid() {
		return fmt.Errorf("%w: limit %s", ErrInvalid, l)
	}
	if cost < 1 || cost > l.Burst {
		return fmt.Errorf("%w: cost %d outside 1..%d", ErrInvalid, cost, l.Burst)
	}
	return nil
}
