package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// Sink receives committed entries, in chain order, for export (to a SIEM). Write is called from
// one goroutine per sink. An error makes the trail retry the same entries later (with backoff,
// until the sink accepts them), so delivery is at least once: a receiver that needs exactly once
// drops entries whose seq it already has.
type Sink interface {
	// Name identifies the sink in logs and stats.
	Name() string
	Write(ctx context.Context, entries []Entry) error
	Close() error
}

// SinkSource is where a sink that fell behind reads back the entries it missed: the chain itself.
// *sqlstore.Store implements it.
type SinkSource interface {
	ScanAudit(ctx context.Context, after int64, fn func(sqlstore.AuditEntry) error) error
}

var _ SinkSource = (*sqlstore.Store)(nil)

// sinkMaxWrite bounds the entries handed to one Write.
const sinkMaxWrite = 512

var errScanDone = errors.New("audit: scan done")

// sinkRunner delivers every committed entry to one sink, in order, without ever slowing the
// appender: entries are buffered in memory up to a bound; past it (a sink that is down or slow)
// the buffer is dropped and the runner reads the entries back from the chain in the store once
// the sink accepts writes again. A failed Write is retried with exponential backoff until it
// succeeds, so an entry is lost to a sink only when the process stops before the sink came back
// (logged with the sequence range to re-export with `fhirgate audit list --after`).
type sinkRunner struct {
	sink       Sink
	src        SinkSource // nil: entries past the buffer are dropped (counted)
	log        *slog.Logger
	limit      int
	minBackoff time.Duration
	maxBackoff time.Duration

	mu   sync.Mutex
	buf  []Entry
	gap  bool  // entries after delivered are not all in buf: read them back from src
	head int64 // highest seq offered

	delivered atomic.Int64 // highest seq the sink accepted
	wake      chan struct{}
	stopping  chan struct{} // deliver what is pending, then return
	abortCtx  context.Context
	abortFn   context.CancelFunc // give up now
	end       chan struct{}
	dropped   atomic.Int64
	failed    atomic.Int64
}

func startSink(s Sink, src SinkSource, from int64, limit int, minBackoff, maxBackoff time.Duration, log *slog.Logger) *sinkRunner {
	r := &sinkRunner{
		sink: s, src: src, log: log, limit: limit, minBackoff: minBackoff, maxBackoff: maxBackoff, head: from,
		wake: make(chan struct{}, 1), stopping: make(chan struct{}), end: make(chan struct{}),
	}
	r.abortCtx, r.abortFn = context.WithCancel(context.Background())
	r.delivered.Store(from)
	go r.run()
	return r
}

// offer hands the runner committed entries (in chain order, after every entry offered before).
// It never blocks.
func (r *sinkRunner) offer(batch []Entry) {
	if len(batch) == 0 {
		return
	}
	r.mu.Lock()
	r.head = batch[len(batch)-1].Seq
	switch {
	case r.gap:
		// The runner reads everything up to the store's head back.
	case len(r.buf)+len(batch) <= r.limit:
		r.buf = append(r.buf, batch...)
	case r.src != nil:
		if !r.gap {
			r.log.Warn("audit: sink falling behind; it will be fed from the store", "sink", r.sink.Name(),
				"delivered_seq", r.delivered.Load(), "head_seq", r.head)
		}
		r.gap, r.buf = true, nil
	default:
		if n := r.dropped.Add(1); n == 1 || n%1000 == 0 {
			r.log.Error("audit: sink falling behind, entries dropped", "sink", r.sink.Name(), "dropped_batches", n,
				"first_seq", batch[0].Seq, "last_seq", batch[len(batch)-1].Seq)
		}
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// next returns the next entries to deliver, from the buffer or read back from the store; none when
// the sink is up to date.
func (r *sinkRunner) next() ([]Entry, error) {
	done := r.delivered.Load()
	r.mu.Lock()
	gap := r.gap
	if !gap {
		// Entries a read-back already delivered may still arrive through offer.
		i := 0
		for i < len(r.buf) && r.buf[i].Seq <= done {
			i++
		}
		r.buf = r.buf[i:]
		if len(r.buf) == 0 {
			r.buf = nil
		}
		out := r.buf[:min(len(r.buf), sinkMaxWrite)]
		r.mu.Unlock()
		return out, nil
	}
	r.mu.Unlock()
	out, err := r.readBack(done)
	if err != nil || len(out) > 0 {
		return out, err
	}
	// The store has nothing after done: the sink caught up, unless entries were committed after
	// the scan and offered meanwhile (head moved): then the next read-back gets them.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head > done {
		return nil, fmt.Errorf("audit: the store has no entry after seq %d yet (head %d)", done, r.head)
	}
	r.gap, r.buf = false, nil
	r.log.Info("audit: sink caught up", "sink", r.sink.Name(), "seq", done)
	return nil, nil
}

func (r *sinkRunner) readBack(after int64) ([]Entry, error) {
	var out []Entry
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := r.src.ScanAudit(ctx, after, func(e sqlstore.AuditEntry) error {
		prev := after
		if len(out) > 0 {
			prev = out[len(out)-1].Seq
		}
		if e.Seq != prev+1 {
			// Entries missing from the chain (deleted): deliver what is there, and say so;
			// `audit verify` reports the damage.
			r.log.Error("audit: entries missing from the chain; the sink skips them", "sink", r.sink.Name(),
				"after_seq", prev, "next_seq", e.Seq)
		}
		out = append(out, EntryFromStore(e))
		if len(out) == sinkMaxWrite {
			return errScanDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errScanDone) {
		return nil, err
	}
	return out, nil
}

// pending reports whether entries wait for delivery (in memory, or in the store after a gap).
func (r *sinkRunner) pending() bool {
	done := r.delivered.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gap || len(r.buf) > 0 && r.buf[len(r.buf)-1].Seq > done
}

func (r *sinkRunner) run() {
	defer close(r.end)
	backoff := r.minBackoff
	for {
		batch, err := r.next()
		if err == nil && len(batch) > 0 {
			err = r.write(batch)
		}
		if err != nil {
			r.failed.Add(1)
			r.log.Error("audit: sink not accepting entries, retrying", "sink", r.sink.Name(),
				"delivered_seq", r.delivered.Load(), "retry_in", backoff, "err", err)
			select {
			case <-r.abortCtx.Done():
				r.lost()
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, r.maxBackoff)
			continue
		}
		backoff = r.minBackoff
		if len(batch) > 0 {
			continue
		}
		select {
		case <-r.wake:
		case <-r.stopping:
			if !r.pending() {
				return
			}
		case <-r.abortCtx.Done():
			r.lost()
			return
		}
	}
}

// write hands batch to the sink; its context ends with the runner's abort.
func (r *sinkRunner) write(batch []Entry) error {
	ctx, cancel := context.WithTimeout(r.abortCtx, 2*time.Minute)
	defer cancel()
	if err := r.sink.Write(ctx, batch); err != nil {
		return err
	}
	r.delivered.Store(batch[len(batch)-1].Seq)
	return nil
}

func (r *sinkRunner) lost() {
	r.mu.Lock()
	head := r.head
	r.mu.Unlock()
	if d := r.delivered.Load(); head > d {
		r.log.Error("audit: sink stopped before delivering every entry; re-export them with `fhirgate audit list --after`",
			"sink", r.sink.Name(), "after_seq", d, "head_seq", head)
	}
}

// stop delivers what is pending (until ctx ends), then closes the sink.
func (r *sinkRunner) stop(ctx context.Context) {
	close(r.stopping)
	select {
	case <-r.end:
	case <-ctx.Done():
		r.abortFn()
		<-r.end
	}
	r.abortFn()
	if err := r.sink.Close(); err != nil {
		r.log.Error("audit: closing sink", "sink", r.sink.Name(), "err", err)
	}
}

// EntryFromStore turns a stored row into the Entry sinks receive. The Event carries what the row's
// indexed columns hold (action, outcome, time, agents, patients, request id) and the break-glass
// flag of the AuditEvent: enough for every sink's formatting.
func EntryFromStore(e sqlstore.AuditEntry) Entry {
	ev := Event{
		Time: e.Recorded, Action: Action(e.Action), Outcome: Outcome(e.Outcome), ClientID: e.ClientID, Subject: e.Subject,
		FHIRUser: e.FHIRUser, SourceIP: e.SourceIP, RequestID: e.RequestID, Patients: e.Patients, Count: -1,
	}
	ev.BreakGlass = breakGlassIn(e.Event)
	return Entry{Seq: e.Seq, Hash: hex.EncodeToString(e.Hash), PrevHash: hex.EncodeToString(e.PrevHash), AuditEvent: e.Event, Event: ev}
}

// breakGlassIn reports whether an AuditEvent's outcome extension marks break-glass access.
func breakGlassIn(ae []byte) bool {
	if !bytes.Contains(ae, []byte(`"breakGlass"`)) {
		return false
	}
	var v struct {
		Extension []extension `json:"extension"`
	}
	if json.Unmarshal(ae, &v) != nil {
		return false
	}
	for _, x := range v.Extension {
		if x.URL != ExtensionOutcome {
			continue
		}
		for _, y := range x.Extension {
			if y.URL == "breakGlass" && y.ValueBoolean != nil && *y.ValueBoolean {
				return true
			}
		}
	}
	return false
}
