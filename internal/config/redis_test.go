package config

import (
	"strings"
	"testing"
	"time"
)

func TestRedisValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(r *Redis)
		want string // a problem key, or "" for valid
	}{
		{"default (off)", func(*Redis) {}, ""},
		{"on", func(r *Redis) { r.Addr = "127.0.0.1:6379" }, ""},
		{"bad addr", func(r *Redis) { r.Addr = "redis" }, "redis.addr"},
		{"negative db", func(r *Redis) { r.DB = -1 }, "redis.db"},
		{"no timeout", func(r *Redis) { r.Timeout = 0 }, "redis.timeout"},
		{"no prefix", func(r *Redis) { r.KeyPrefix = "" }, "redis.key_prefix"},
		{"cache too long", func(r *Redis) { r.RevocationCacheTTL = time.Hour }, "redis.revocation_cache_ttl"},
		{"cache negative", func(r *Redis) { r.RevocationCacheTTL = -time.Second }, "redis.revocation_cache_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mod(&c.Redis)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want a problem with %s", err, tt.want)
			}
		})
	}
}

func TestSharedRedis(t *testing.T) {
	c := Default()
	if got := c.SharedRedis(); got.Addr != "" {
		t.Errorf("default shared redis addr %q, want off", got.Addr)
	}
	c.Gateway.RateLimit.Engine = "redis"
	c.Gateway.RateLimit.Redis.Addr, c.Gateway.RateLimit.Redis.PasswordEnv = "rl:6379", "RL_PW"
	if got := c.SharedRedis(); got.Addr != "rl:6379" || got.PasswordEnv != "RL_PW" || got.KeyPrefix != "fhirgate:" {
		t.Errorf("fallback to the rate limiter's redis = %+v", got)
	}
	c.Redis.Addr = "shared:6379"
	if got := c.SharedRedis(); got.Addr != "shared:6379" || got.PasswordEnv != "" {
		t.Errorf("own section = %+v", got)
	}
	env := map[string]string{"FHIRGATE_REDIS_ADDR": "env:6379", "FHIRGATE_REDIS_REVOCATION_CACHE_TTL": "2s"}
	c = Default()
	if err := ApplyEnv(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.Redis.Addr != "env:6379" || c.Redis.RevocationCacheTTL != 2*time.Second {
		t.Errorf("env: %+v", c.Redis)
	}
}
