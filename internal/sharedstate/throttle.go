package sharedstate

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/config"
)

// LoginThrottle counts failed logins per account and per client IP in Redis, so that the limits
// hold across instances: an attacker spreading guesses over the instances behind a load balancer
// gets no more tries than against one. Each counter is a fixed window that starts at its first
// failure (the key's expiry), as the authorization server's per-instance throttle does. An error
// means Redis did not answer; the caller then falls back to its own counters.
type LoginThrottle struct {
	c   *Client
	cfg config.LoginThrottle
}

// NewLoginThrottle returns the shared throttle with the limits of cfg.
func NewLoginThrottle(c *Client, cfg config.LoginThrottle) *LoginThrottle {
	return &LoginThrottle{c: c, cfg: cfg}
}

// reserveScript refuses when either counter is at its limit (0 = no limit); otherwise it counts
// the attempt as a failure on both, in one step, so parallel guesses cannot all pass the check.
var reserveScript = redis.NewScript(`
local a = tonumber(redis.call('GET', KEYS[1]) or '0')
local i = tonumber(redis.call('GET', KEYS[2]) or '0')
local la, li = tonumber(ARGV[1]), tonumber(ARGV[2])
if (la > 0 and a >= la) or (li > 0 and i >= li) then return 0 end
for _, k in ipairs(KEYS) do
  if redis.call('INCR', k) == 1 then redis.call('PEXPIRE', k, ARGV[3]) end
end
return 1`)

// succeedScript clears the account's counter and takes back the IP's count of the attempt.
var succeedScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
local i = tonumber(redis.call('GET', KEYS[2]) or '0')
if i > 0 then redis.call('DECR', KEYS[2]) end
return 1`)

func (t *LoginThrottle) keys(username, ip string) []string {
	// One hash tag: both keys of a script live in one slot of a Redis Cluster.
	return []string{t.c.key("{login}:u", username), t.c.key("{login}:i", ip)}
}

// Reserve reports whether a login attempt may proceed and, if so, counts it as a failure.
func (t *LoginThrottle) Reserve(ctx context.Context, username, ip string) (bool, error) {
	ctx, cancel := t.c.call(ctx)
	defer cancel()
	n, err := reserveScript.Run(ctx, t.c.rdb, t.keys(username, ip),
		t.cfg.MaxFailuresPerAccount, t.cfg.MaxFailuresPerIP, t.cfg.Window.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("login throttle: %w", err)
	}
	return n == 1, nil
}

// Succeed clears the account's failures after a correct password and takes back the IP's count
// of the attempt Reserve made.
func (t *LoginThrottle) Succeed(ctx context.Context, username, ip string) error {
	ctx, cancel := t.c.call(ctx)
	defer cancel()
	if err := succeedScript.Run(ctx, t.c.rdb, t.keys(username, ip)).Err(); err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	return nil
}
