package metrics

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RedisHook times every Redis round trip of the client it is added to (redis.Client.AddHook): a
// command or a pipeline is one observation. redis.Nil (a missing key) is a normal answer, not an
// error.
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m.redis} }

type redisHook struct{ h *prometheus.HistogramVec }

func (redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.observe(start, err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.observe(start, err)
		return err
	}
}

func (h redisHook) observe(start time.Time, err error) {
	result := "ok"
	if err != nil && !errors.Is(err, redis.Nil) {
		result = "error"
	}
	h.h.WithLabelValues(result).Observe(time.Since(start).Seconds())
}
