package metrics

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The hook times real Redis round trips: a missing key is an ok answer, a refused connection an
// error.
func TestRedisHook(t *testing.T) {
	addr := os.Getenv("FHIRGATE_TEST_REDIS")
	if addr == "" {
		t.Skip("FHIRGATE_TEST_REDIS is not set (e.g. 127.0.0.1:6379); skipping the Redis latency metric test")
	}
	m := New()
	ctx := context.Background()
	up := redis.NewClient(&redis.Options{Addr: addr})
	defer up.Close()
	up.AddHook(m.RedisHook())
	key := "fhirgate:test:metrics:" + time.Now().Format(time.RFC3339Nano)
	if err := up.Get(ctx, key).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET of a missing key = %v, want redis.Nil", err)
	}
	pipe := up.Pipeline()
	pipe.Set(ctx, key, "1", time.Minute)
	pipe.Del(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer down.Close()
	down.AddHook(m.RedisHook())
	if err := down.Ping(ctx).Err(); err == nil {
		t.Fatal("PING to a closed port succeeded")
	}
	body := scrape(t, m)
	// The client's own connection set-up commands are timed too, so only presence is checked.
	for _, want := range []string{
		`fhirgate_redis_command_duration_seconds_count{result="ok"} `,
		`fhirgate_redis_command_duration_seconds_count{result="error"} `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in:\n%s", want, grepLines(body, "fhirgate_redis"))
		}
	}
}

func grepLines(body, prefix string) string {
	var out []string
	for l := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
