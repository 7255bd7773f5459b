package audit

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Sink receives committed entries, in chain order, for export (to a SIEM). Write is called from
// one goroutine per sink; it should retry transient failures itself and return an error only when
// it gave up on the batch.
type Sink interface {
	// Name identifies the sink in logs and stats.
	Name() string
	Write(ctx context.Context, entries []Entry) error
	Close() error
}

// sinkRunner feeds one sink from a bounded queue so that a slow sink never slows the appender.
type sinkRunner struct {
	sink    Sink
	queue   chan []Entry
	end     chan struct{}
	log     *slog.Logger
	dropped atomic.Int64
	failed  atomic.Int64
}

func startSink(s Sink, size int, log *slog.Logger) *sinkRunner {
	r := &sinkRunner{sink: s, queue: make(chan []Entry, size), end: make(chan struct{}), log: log}
	go r.run()
	return r
}

// offer queues a batch without blocking; a full queue drops it (counted and logged: the store
// still has every entry, and `fhirgate audit list` can re-export the gap).
func (r *sinkRunner) offer(batch []Entry) {
	select {
	case r.queue <- batch:
	default:
		if n := r.dropped.Add(1); n == 1 || n%1000 == 0 {
			r.log.Error("audit: sink falling behind, batches dropped", "sink", r.sink.Name(), "dropped", n,
				"first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq)
		}
	}
}

func (r *sinkRunner) run() {
	defer close(r.end)
	for batch := range r.queue {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := r.sink.Write(ctx, batch); err != nil {
			r.failed.Add(1)
			r.log.Error("audit: sink write failed", "sink", r.sink.Name(), "first_seq", batch[0].Seq,
				"last_seq", batch[len(batch)-1].Seq, "err", err)
		}
		cancel()
	}
}

// stop delivers what is queued, then closes the sink.
func (r *sinkRunner) stop() {
	close(r.queue)
	<-r.end
	if err := r.sink.Close(); err != nil {
		r.log.Error("audit: closing sink", "sink", r.sink.Name(), "err", err)
	}
}
