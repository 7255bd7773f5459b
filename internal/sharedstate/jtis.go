package sharedstate

import (
	"context"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// JTIStore records client-assertion jtis durably (the store).
type JTIStore interface {
	UseAssertionJTI(ctx context.Context, key string, exp, now time.Time) error
}

// JTIs is the replay cache of private_key_jwt client assertions across instances. A jti is first
// claimed in Redis (SET NX until the assertion expires), which refuses a replay at any instance
// without a database write; a first use is then recorded in the store as well, which stays the
// record: a Redis that lost its keys (restart, failover) or is unreachable cannot let a replay
// through.
type JTIs struct {
	db JTIStore
	c  *Client
}

// NewJTIs returns the replay cache in front of db; with c nil it is db alone.
func NewJTIs(db JTIStore, c *Client) *JTIs { return &JTIs{db: db, c: c} }

// UseAssertionJTI records key (client id and jti) until exp. It returns an error matching
// sqlstore.ErrOAuthExists for a replay.
func (j *JTIs) UseAssertionJTI(ctx context.Context, key string, exp, now time.Time) error {
	if j.c != nil && exp.After(now) {
		cctx, cancel := j.c.call(ctx)
		ok, err := j.c.rdb.SetNX(cctx, j.c.key("jti", key), 1, exp.Sub(now)+time.Second).Result()
		cancel()
		switch {
		case err != nil:
			j.c.log.Warn("assertion jti not checked in redis; the database decides", "error", err)
		case !ok:
			return fmt.Errorf("assertion jti: %w", sqlstore.ErrOAuthExists)
		}
	}
	return j.db.UseAssertionJTI(ctx, key, exp, now)
}
