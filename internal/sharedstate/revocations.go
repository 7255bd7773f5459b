package sharedstate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Revoker answers revocation checks from the source of truth (the store).
type Revoker interface {
	Revoked(ctx context.Context, jti string) (bool, error)
}

// Revocations is the revocation check of the FHIR side (authn.Revoker) on several instances: a
// per-instance cache of the store's answers, emptied whenever any instance revokes a token.
//
// Each revocation committed to the store is announced on a Redis channel (Notify, registered as
// the store's revocation hook); every instance's subscriber empties its cache on the notice, so a
// token revoked at one instance is refused by all of them within the pub/sub delivery time. The
// cache is used only while the subscription is known to be live: until the subscription is
// confirmed, after any error, and when Redis stops answering pings, every check goes to the store
// (correct, slower). A "not revoked" answer is kept at most TTL, which bounds the staleness in the
// one case pub/sub cannot cover: the revoking instance cannot reach Redis while the others can.
type Revocations struct {
	db      Revoker
	c       *Client
	ttl     time.Duration
	channel string
	now     func() time.Time

	healthy atomic.Bool
	mu      sync.Mutex
	gen     uint64 // bumped by every invalidation; a lookup that saw another gen does not cache
	entries map[string]revEntry
}

type revEntry struct {
	revoked bool
	until   time.Time
}

const (
	// revokedTTL is how long a "revoked" answer is kept: revocation is permanent, the bound only
	// keeps the map small.
	revokedTTL       = 10 * time.Minute
	maxCachedAnswers = 200_000
)

// NewRevocations returns the cache in front of db. With c nil or ttl zero it is a plain pass-through
// to db. Run must be running for the cache to be used.
func NewRevocations(db Revoker, c *Client, ttl time.Duration) *Revocations {
	r := &Revocations{db: db, c: c, ttl: ttl, now: time.Now, entries: map[string]revEntry{}}
	if c != nil {
		r.channel = c.prefix + "revocations"
	}
	return r
}

// Revoked reports whether the access token jti is revoked.
func (r *Revocations) Revoked(ctx context.Context, jti string) (bool, error) {
	if !r.healthy.Load() {
		return r.db.Revoked(ctx, jti)
	}
	now := r.now()
	r.mu.Lock()
	e, ok := r.entries[jti]
	gen := r.gen
	r.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.revoked, nil
	}
	revoked, err := r.db.Revoked(ctx, jti)
	if err != nil {
		return false, err
	}
	ttl := r.ttl
	if revoked {
		ttl = revokedTTL
	}
	r.mu.Lock()
	// A notice that arrived while the store was asked may be about this token: the answer is
	// returned but not kept.
	if r.gen == gen && r.healthy.Load() {
		if len(r.entries) >= maxCachedAnswers {
			clear(r.entries)
		}
		r.entries[jti] = revEntry{revoked: revoked, until: now.Add(ttl)}
	}
	r.mu.Unlock()
	return revoked, nil
}

// Cached reports whether the cache is in use (the subscription is live); /readyz shows it.
func (r *Revocations) Cached() bool { return r.healthy.Load() }

// invalidate empties the cache and makes lookups in flight not cache their answers.
func (r *Revocations) invalidate() {
	r.mu.Lock()
	r.gen++
	clear(r.entries)
	r.mu.Unlock()
}

func (r *Revocations) setHealthy(v bool) {
	r.mu.Lock()
	r.gen++
	clear(r.entries)
	was := r.healthy.Swap(v)
	r.mu.Unlock()
	if r.c != nil && was != v {
		if v {
			r.c.log.Info("revocation notices subscribed; revocation answers are cached")
		} else {
			r.c.log.Warn("revocation notices unavailable; every revocation check asks the database")
		}
	}
}

// Notify is the store's revocation hook: it empties this instance's cache and tells the other
// instances to empty theirs. A notice that cannot be published is logged; the others then keep
// their answers at most TTL.
func (r *Revocations) Notify() {
	r.invalidate()
	if r.c == nil {
		return
	}
	ctx, cancel := r.c.call(context.Background())
	defer cancel()
	if err := r.c.rdb.Publish(ctx, r.channel, "revoked").Err(); err != nil {
		r.c.log.Error("a revocation notice could not be published; other instances may answer from their cache until it expires",
			"error", err, "cache_ttl", r.ttl)
	}
}

// Run keeps the subscription to the revocation channel until ctx is done, resubscribing after
// failures. The cache is used only while the subscription is live.
func (r *Revocations) Run(ctx context.Context) {
	if r.c == nil || r.ttl <= 0 {
		return
	}
	subscribe(ctx, r.c, r.channel, "revocation", r.setHealthy, func(string) { r.invalidate() })
}
