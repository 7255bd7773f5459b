package sharedstate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fhirgate/fhirgate/internal/config"
)

// Client is the Redis connection of the shared state with its key prefix and call timeout.
type Client struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	owned   bool
}

// Dial makes a client for cfg (config.Config.SharedRedis) without waiting for Redis to answer:
// Ping reports that. lookup reads the password variable. It returns nil, nil when cfg.Addr is
// empty (shared state off). hooks are added to the Redis client (latency metrics).
func Dial(cfg config.Redis, lookup func(string) (string, bool), log *slog.Logger, hooks ...redis.Hook) (*Client, error) {
	if cfg.Addr == "" {
		return nil, nil
	}
	opts := &redis.Options{
		Addr:         cfg.Addr,
		Username:     cfg.Username,
		DB:           cfg.DB,
		DialTimeout:  max(cfg.Timeout, time.Second),
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		PoolTimeout:  cfg.Timeout,
		// Fail fast: the caller falls back to the database, which beats waiting on retries.
		MaxRetries: 1,
	}
	if cfg.PasswordEnv != "" {
		pw, ok := lookup(cfg.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("redis.password_env: %s is not set", cfg.PasswordEnv)
		}
		opts.Password = pw
	}
	if cfg.TLS {
		host, _, _ := strings.Cut(cfg.Addr, ":")
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	rdb := redis.NewClient(opts)
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	c := NewClient(rdb, cfg.KeyPrefix, cfg.Timeout, log)
	c.owned = true
	return c, nil
}

// NewClient wraps an existing Redis client (tests use one with a prefix of their own). The caller
// keeps ownership of rdb.
func NewClient(rdb redis.UniversalClient, prefix string, timeout time.Duration, log *slog.Logger) *Client {
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{rdb: rdb, prefix: prefix, timeout: timeout, log: log.With("component", "sharedstate")}
}

// Ping reports whether Redis answers.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Close closes the Redis client if Dial made it.
func (c *Client) Close() error {
	if c == nil || !c.owned {
		return nil
	}
	return c.rdb.Close()
}

// key is prefix + kind + the hex SHA-256 of the parts: no user name, IP address or client id
// appears in Redis in clear, and keys have a bounded length.
func (c *Client) key(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return c.prefix + kind + ":" + hex.EncodeToString(h.Sum(nil))
}

func (c *Client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}
