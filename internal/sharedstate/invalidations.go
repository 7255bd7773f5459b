package sharedstate

import (
	"context"
	"sync"
	"sync/atomic"
)

// Invalidations tells every instance that data it may have cached changed: the instance that
// changed it publishes the scope on a Redis channel, and every instance's subscriber calls the
// drop functions watching that scope. A scope names one cache (the Consents of one FHIR base);
// the message carries nothing else, so no patient id reaches Redis.
//
// As with revocations, a cache in front of the channel may be trusted only while the
// subscription is live (Live): until Redis confirms it, after any error, and when Redis stops
// answering pings, the caches must read through. Every change of Live calls every drop
// function, so nothing cached before an outage survives it. A notice that cannot be published
// is logged; the other instances then keep their entries until their own TTL.
type Invalidations struct {
	c       *Client
	channel string
	what    string

	live  atomic.Bool
	mu    sync.Mutex
	drops map[string][]func()
}

// NewInvalidations returns the invalidation channel called name (under the client's key
// prefix); what names it in logs. With c nil it is never live and publishes nothing. Run must be running for it to be
// live.
func NewInvalidations(c *Client, name, what string) *Invalidations {
	n := &Invalidations{c: c, what: what, drops: map[string][]func(){}}
	if c != nil {
		n.channel = c.prefix + name
	}
	return n
}

// Watch registers drop for the notices of scope. drop must be quick (it runs on the subscriber)
// and may be called at any time, also for no change.
func (n *Invalidations) Watch(scope string, drop func()) {
	n.mu.Lock()
	n.drops[scope] = append(n.drops[scope], drop)
	n.mu.Unlock()
}

// Live reports whether the subscription is live, that is whether a cache watching a scope may
// be trusted.
func (n *Invalidations) Live() bool { return n != nil && n.live.Load() }

// Publish tells every instance (this one included) that the data of scope changed. Call it
// after the change is committed.
func (n *Invalidations) Publish(ctx context.Context, scope string) {
	if n == nil || n.c == nil {
		return
	}
	ctx, cancel := n.c.call(context.WithoutCancel(ctx))
	defer cancel()
	if err := n.c.rdb.Publish(ctx, n.channel, scope).Err(); err != nil {
		n.c.log.Error(n.what+" notice could not be published; other instances may answer from their cache until it expires",
			"error", err)
	}
}

// Run keeps the subscription until ctx is done, resubscribing after failures.
func (n *Invalidations) Run(ctx context.Context) {
	if n.c == nil {
		return
	}
	subscribe(ctx, n.c, n.channel, n.what, n.setLive, n.drop)
}

// drop calls the drop functions of scope; a scope this instance does not serve is ignored.
func (n *Invalidations) drop(scope string) {
	n.mu.Lock()
	fns := n.drops[scope]
	n.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// setLive flips Live before dropping every cache: an answer read while the subscription was
// down is dropped when it comes up, and one read while it was up is dropped when it goes down
// (a cache checks Live again before keeping an answer).
func (n *Invalidations) setLive(v bool) {
	was := n.live.Swap(v)
	n.mu.Lock()
	var fns []func()
	for _, d := range n.drops {
		fns = append(fns, d...)
	}
	n.mu.Unlock()
	for _, f := range fns {
		f()
	}
	if was != v {
		if v {
			n.c.log.Info(n.what + " notices subscribed; cached answers are used")
		} else {
			n.c.log.Warn(n.what + " notices unavailable; every lookup reads through to the source")
		}
	}
}
