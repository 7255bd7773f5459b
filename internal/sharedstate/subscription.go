package sharedstate

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// pingEvery paces a subscriber's liveness pings; no message for three periods means the
// subscription is not trusted.
const pingEvery = 500 * time.Millisecond

var errStale = errors.New("no answer from redis to the subscription's pings")

// subscribe keeps channel subscribed until ctx is done, resubscribing after failures with
// backoff. live(true) is called once Redis confirms the subscription, live(false) whenever it
// ends (error, silence, ctx done): a cache in front of the channel is trusted only in between.
// onMessage gets each message's payload. what names the channel in logs.
func subscribe(ctx context.Context, c *Client, channel, what string, live func(bool), onMessage func(string)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		ps := c.rdb.Subscribe(ctx, channel)
		err := receive(ctx, ps, channel, live, onMessage)
		_ = ps.Close()
		live(false)
		if ctx.Err() != nil {
			return
		}
		c.log.Debug(what+" subscription ended", "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// receive reads the subscription until it fails or goes quiet.
func receive(ctx context.Context, ps *redis.PubSub, channel string, live func(bool), onMessage func(string)) error {
	last := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if time.Since(last) > 3*pingEvery {
				return errStale
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			continue
		}
		last = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == channel {
				live(true)
			}
		case *redis.Message:
			onMessage(m.Payload)
		}
	}
}
