package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Redis is the shared engine: GCRA buckets in Redis through github.com/go-redis/redis_rate, so
// every fhirgate instance spends from the same buckets.
//
// The GCRA arithmetic runs in a Lua script that reads the Redis server's clock (TIME), so all
// instances agree on time whatever their own clocks say. The injected clock only paces the
// outage back-off: after a failed call the engine answers ErrUnavailable at once for Backoff,
// instead of making every request wait for the timeout, then tries Redis again.
type Redis struct {
	client  redis.UniversalClient
	limiter *redis_rate.Limiter
	opts    RedisOptions

	down      atomic.Bool // fast path: false while Redis answers
	mu        sync.Mutex
	downUntil time.Time
	lastErr   error
}

// RedisOptions tunes the Redis engine. Zero values take the documented defaults.
type RedisOptions struct {
	// Prefix starts every key; tests use a distinct one each.
	Prefix string
	// Timeout bounds each call; 100ms when zero.
	Timeout time.Duration
	// Backoff is how long a failure short-circuits further calls; 1s when zero.
	Backoff time.Duration
	// Now is the clock of the back-off; time.Now when nil.
	Now func() time.Time
	// Logger receives one line when Redis becomes unreachable and one when it recovers.
	Logger *slog.Logger
	// FailureMode describes, for the log, what the caller does while Redis is down.
	FailureMode string
}

var (
	_ Limiter = (*Redis)(nil)
	_ Pinger  = (*Redis)(nil)
)

// NewRedis returns an engine on client. The caller owns the client and closes it.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Timeout <= 0 {
		opts.Timeout = 100 * time.Millisecond
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Redis{client: client, limiter: redis_rate.NewLimiter(client), opts: opts}
}

// Allow implements Limiter.
func (e *Redis) Allow(ctx context.Context, key string, l Limit, cost int) (Result, error) {
	if err := check(l, cost); err != nil {
		return Result{}, err
	}
	if err := e.backingOff(); err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	defer cancel()
	lim := redis_rate.Limit{Rate: l.Rate, Period: l.Period, Burst: l.Burst}
	r, err := e.limiter.AllowN(ctx, e.opts.Prefix+key, lim, cost)
	if err != nil {
		return Result{}, e.fail(err)
	}
	e.recovered()
	res := Result{Allowed: r.Allowed > 0, Limit: l, Remaining: max(0, r.Remaining), ResetAfter: max(0, r.ResetAfter)}
	if !res.Allowed {
		res.RetryAfter = max(r.RetryAfter, time.Microsecond)
		// redis_rate reports 0 remaining on a denial; the bucket still holds what the time to
		// reset says: Burst minus the points that are still refilling.
		res.Remaining = max(0, l.Burst-int(math.Ceil(float64(res.ResetAfter)/float64(l.Interval())-1e-6)))
	}
	return res, nil
}

// Ping implements Pinger: it reports whether Redis answers, bypassing the back-off.
func (e *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(e.opts.Timeout, time.Second))
	defer cancel()
	if err := e.client.Ping(ctx).Err(); err != nil {
		return e.fail(err)
	}
	e.recovered()
	return nil
}

func (e *Redis) backingOff() error {
	if !e.down.Load() {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastErr != nil && e.opts.Now().Before(e.downUntil) {
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, e.lastErr)
	}
	return nil
}

func (e *Redis) fail(err error) error {
	if errors.Is(err, context.Canceled) {
		// The client went away; that says nothing about Redis.
		return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
	}
	e.mu.Lock()
	wasUp := e.lastErr == nil
	e.lastErr = err
	e.down.Store(true)
	e.downUntil = e.opts.Now().Add(e.opts.Backoff)
	e.mu.Unlock()
	if wasUp {
		e.opts.Logger.Warn("rate limiter: redis unreachable", "error", err, "failure_mode", e.opts.FailureMode)
	}
	return fmt.Errorf("%w: redis: %w", ErrUnavailable, err)
}

func (e *Redis) recovered() {
	if !e.down.Load() {
		return
	}
	e.mu.Lock()
	wasDown := e.lastErr != nil
	e.lastErr = nil
	e.down.Store(false)
	e.mu.Unlock()
	if wasDown {
		e.opts.Logger.Info("rate limiter: redis reachable again")
	}
}
