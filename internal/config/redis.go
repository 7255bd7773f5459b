package config

import (
	"net"
	"time"
)

// Redis configures the Redis that several instances share for fast state: revocation notices
// (pub/sub), the client-assertion jti replay cache and login throttling counters. The database
// stays the source of truth: while Redis is unreachable each instance falls back to the database
// (and login throttling to per-instance counters), and losing Redis loses no data.
//
// Shared state is on when addr is set. With addr empty and the rate limiter's engine redis, the
// rate limiter's connection (gateway.rate_limit.redis) is used, so one Redis configured once
// serves both.
type Redis struct {
	// Addr is host:port of the Redis server; empty turns shared state off (one instance).
	Addr string `yaml:"addr"`
	// Username is the Redis ACL user, if any.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the Redis password, if any.
	PasswordEnv string `yaml:"password_env"`
	// DB is the Redis database number.
	DB int `yaml:"db"`
	// TLS connects with TLS.
	TLS bool `yaml:"tls"`
	// Timeout bounds each call; past it the database answers instead.
	Timeout time.Duration `yaml:"timeout"`
	// KeyPrefix starts every key and channel name of the shared state.
	KeyPrefix string `yaml:"key_prefix"`
	// RevocationCacheTTL is how long an instance trusts a "not revoked" answer it cached. A
	// revocation reaches every instance through pub/sub at once; the TTL bounds the staleness
	// only when a notice is lost (the revoking instance cannot reach Redis while the others can).
	RevocationCacheTTL time.Duration `yaml:"revocation_cache_ttl"`
}

// DefaultRedis returns the shared-state defaults (off until an address is set).
func DefaultRedis() Redis {
	return Redis{Timeout: 200 * time.Millisecond, KeyPrefix: "fhirgate:", RevocationCacheTTL: time.Second}
}

// SharedRedis is the connection the shared state uses: the redis section when its addr is set,
// else the rate limiter's Redis when that engine is redis (with this section's prefix and cache
// TTL), else a zero Addr (shared state off).
func (c *Config) SharedRedis() Redis {
	r := c.Redis
	if r.Addr != "" {
		return r
	}
	if rl := c.Gateway.RateLimit; rl.Enabled && rl.Engine == "redis" && rl.Redis.Addr != "" {
		r.Addr, r.Username, r.PasswordEnv, r.DB, r.TLS = rl.Redis.Addr, rl.Redis.Username, rl.Redis.PasswordEnv, rl.Redis.DB, rl.Redis.TLS
	}
	return r
}

func (r *Redis) validate(v *Problems) {
	if r.Addr != "" {
		if _, _, err := net.SplitHostPort(r.Addr); err != nil {
			v.Add("redis.addr", "must be host:port, got %q", r.Addr)
		}
	}
	if r.DB < 0 {
		v.Add("redis.db", "must not be negative")
	}
	if r.Timeout <= 0 {
		v.Add("redis.timeout", "must be positive")
	}
	if r.KeyPrefix == "" {
		v.Add("redis.key_prefix", "must be set")
	}
	if r.RevocationCacheTTL < 0 || r.RevocationCacheTTL > time.Minute {
		v.Add("redis.revocation_cache_ttl", "must be between 0 (no cache) and 1m, got %s", r.RevocationCacheTTL)
	}
}
