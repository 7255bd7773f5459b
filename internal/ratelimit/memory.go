package ratelimit

import (
	"cmp"
	"context"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Memory is the in-process engine: one golang.org/x/time/rate token bucket per key, read at the
// time of the injected clock. It suits a single instance; several instances each keep their own
// buckets, multiplying the effective quota.
//
// At most MaxKeys buckets are kept. A full bucket carries no state (it is equal to a new one) and
// is dropped first; if the map is still over the cap, the fullest buckets are dropped (in their
// clients' favour), so memory stays bounded under a flood of distinct keys while the buckets of
// clients being limited survive it.
type Memory struct {
	now     func() time.Time
	maxKeys int
	seed    maphash.Seed
	shards  [memoryShards]memoryShard
}

const memoryShards = 64

type memoryShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim   *rate.Limiter
	limit Limit
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty in-memory engine. now is the clock (time.Now in production); maxKeys
// bounds the number of buckets kept (at least memoryShards).
func NewMemory(now func() time.Time, maxKeys int) *Memory {
	if now == nil {
		now = time.Now
	}
	if maxKeys < memoryShards {
		maxKeys = memoryShards
	}
	m := &Memory{now: now, maxKeys: maxKeys, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].buckets = make(map[string]*bucket)
	}
	return m
}

// Allow implements Limiter.
func (m *Memory) Allow(_ context.Context, key string, l Limit, cost int) (Result, error) {
	if err := check(l, cost); err != nil {
		return Result{}, err
	}
	now := m.now()
	perSec := rate.Limit(float64(l.Rate) / l.Period.Seconds())
	sh := &m.shards[maphash.String(m.seed, key)%memoryShards]

	sh.mu.Lock()
	b, ok := sh.buckets[key]
	if !ok {
		if len(sh.buckets) >= m.maxKeys/memoryShards {
			sh.evict(now, m.maxKeys/memoryShards)
		}
		b = &bucket{lim: rate.NewLimiter(perSec, l.Burst), limit: l}
		sh.buckets[key] = b
	} else if b.limit != l {
		// The limit of a key changed (configuration reload): keep the points already spent.
		b.lim.SetLimitAt(now, perSec)
		b.lim.SetBurstAt(now, l.Burst)
		b.limit = l
	}
	sh.mu.Unlock()

	allowed := b.lim.AllowN(now, cost)
	tokens := b.lim.TokensAt(now)
	res := Result{Allowed: allowed, Limit: l, Remaining: max(0, int(math.Floor(tokens+1e-9)))}
	if !allowed {
		res.RetryAfter = refill(float64(cost)-tokens, perSec)
	}
	res.ResetAfter = refill(float64(l.Burst)-tokens, perSec)
	return res, nil
}

// evict makes room in a shard holding at least limit buckets: first drop the full ones (they
// carry no state), then the fullest ones down to 90% of limit. The most-spent buckets, those of
// the clients being limited, are kept longest, so flooding the engine with new keys cannot wipe
// an abuser's own bucket. Called with sh.mu held.
func (sh *memoryShard) evict(now time.Time, limit int) {
	type fill struct {
		key   string
		ratio float64
	}
	rest := make([]fill, 0, len(sh.buckets))
	for k, b := range sh.buckets {
		t := b.lim.TokensAt(now)
		if t >= float64(b.limit.Burst) {
			delete(sh.buckets, k)
			continue
		}
		rest = append(rest, fill{k, t / float64(b.limit.Burst)})
	}
	target := limit * 9 / 10
	if len(rest) <= target {
		return
	}
	slices.SortFunc(rest, func(a, b fill) int { return cmp.Compare(b.ratio, a.ratio) })
	for _, f := range rest[:len(rest)-target] {
		delete(sh.buckets, f.key)
	}
}

// Len is the number of buckets kept.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		m.shards[i].mu.Lock()
		n += len(m.shards[i].buckets)
		m.shards[i].mu.Unlock()
	}
	return n
}

// refill is the time perSec takes to refill points, rounded up to the microsecond.
func refill(points float64, perSec rate.Limit) time.Duration {
	if points <= 0 {
		return 0
	}
	d := time.Duration(math.Ceil(points / float64(perSec) * 1e6))
	return d * time.Microsecond
}
