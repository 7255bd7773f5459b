package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// Durability says when Record returns.
type Durability string

// The durability policies.
const (
	// DurabilitySync: Record returns after the transaction holding the event committed (the
	// event survives a crash once the response is sent). Concurrent events share one commit.
	DurabilitySync Durability = "sync"
	// DurabilityBatch: Record returns once the event is queued; the appender commits within
	// FlushInterval. A crash loses at most the events of the last FlushInterval.
	DurabilityBatch Durability = "batch"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("audit: trail closed")

// Store is the persistence of the trail; *sqlstore.Store implements it.
type Store interface {
	AppendAudit(ctx context.Context, build func(head sqlstore.AuditHead) ([]sqlstore.AuditEntry, error)) ([]sqlstore.AuditEntry, error)
	AuditHead(ctx context.Context) (sqlstore.AuditHead, error)
	PutAuditCheckpoint(ctx context.Context, c sqlstore.AuditCheckpoint) error
	LatestAuditCheckpoint(ctx context.Context) (sqlstore.AuditCheckpoint, error)
}

var _ Store = (*sqlstore.Store)(nil)

// Options configures a Trail. Only Store is required.
type Options struct {
	Store Store
	// Durability is DurabilitySync when empty.
	Durability Durability
	// FlushInterval is the longest an event waits for its commit with DurabilityBatch; 10ms
	// when zero.
	FlushInterval time.Duration
	// MaxBatch bounds the events committed in one transaction; 512 when zero.
	MaxBatch int
	// QueueSize bounds the events waiting for the appender; Record blocks (honouring its
	// context) when it is full. 8192 when zero.
	QueueSize int
	// Signer signs checkpoints; no checkpoints are made when nil.
	Signer Signer
	// CheckpointInterval is how often a checkpoint is signed when the chain grew; one minute
	// when zero.
	CheckpointInterval time.Duration
	// CheckpointEntries forces a checkpoint after this many entries; 10000 when zero.
	CheckpointEntries int
	// Source describes this server in every AuditEvent; Source.Observer is also the checkpoint
	// origin.
	Source Source
	// Sinks receive every committed entry, in order, each on its own goroutine.
	Sinks []Sink
	// SinkQueue bounds the entries held in memory for one sink; a sink that falls further
	// behind (down, or slower than the appender) is fed from the chain in the store once it
	// accepts writes again, so it misses nothing (a store that does not implement SinkSource:
	// the entries past the bound are dropped, counted in Stats). 8192 when zero. It also bounds
	// the batches waiting for the detectors.
	SinkQueue int
	// SinkRetry is the first wait before a failed sink write is retried, doubled up to
	// SinkRetryMax (100ms and 30s when zero). Retries go on until the sink accepts the entries
	// or Close gives up.
	SinkRetry, SinkRetryMax time.Duration
	// SinkDrainTimeout bounds how long Close waits for sinks that are down; 10s when zero (or
	// Close's context, whichever ends first).
	SinkDrainTimeout time.Duration
	// Detectors observe every committed event (alerts excepted) on one goroutine.
	Detectors []Detector
	// OnAlert is called for every alert raised, after it is logged (for metrics).
	OnAlert func(Alert)
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger; slog.Default when nil.
	Logger *slog.Logger
}

// Entry is a committed entry of the chain as sinks see it.
type Entry struct {
	Seq        int64           `json:"seq"`
	Hash       string          `json:"hash"`
	PrevHash   string          `json:"prev"`
	AuditEvent json.RawMessage `json:"auditEvent"`
	// Event is the event as recorded (normalised); not serialised.
	Event Event `json:"-"`
}

// Stats are counters of a Trail.
type Stats struct {
	Appended      int64
	Flushes       int64
	FailedFlushes int64
	Checkpoints   int64
	Alerts        int64
	// SinkDropped counts batches a sink lost because it fell behind and the store cannot feed
	// it, by sink name.
	SinkDropped map[string]int64
	// SinkFailed counts failed sink writes (each retried), by sink name.
	SinkFailed map[string]int64
	// SinkDelivered is the highest sequence each sink accepted, by sink name.
	SinkDelivered map[string]int64
	// DetectorDropped counts batches the detectors did not see because they fell behind.
	DetectorDropped int64
}

// Trail is the audit trail: a Recorder appending to the hash chain through one appender
// goroutine. It is safe for concurrent use.
type Trail struct {
	opts  Options
	store Store
	now   func() time.Time
	log   *slog.Logger

	mu          sync.RWMutex // guards closed and queueClosed against sends on queue
	closed      bool         // Record refuses events (alerts of the detectors still go in)
	queueClosed bool
	queue       chan *pending
	syncReq     chan syncRequest
	done        chan struct{} // closed when the appender returned
	abort       chan struct{} // closed when Close's context ends: stop retrying failed commits
	abortOnce   sync.Once

	// appender state
	head      sqlstore.AuditHead
	lastCP    int64
	lastCPAt  time.Time
	sinceCP   int
	sinks     []*sinkRunner
	detectQ   chan []Entry
	detectEnd chan struct{}

	appended, flushes, failedFlushes, checkpoints, alerts, detectDropped atomic.Int64
}

// syncRequest asks the appender to commit everything queued, and optionally to checkpoint.
type syncRequest struct {
	checkpoint bool
	// stopDetectors closes the detectors' queue after the flush (the appender owns it).
	stopDetectors bool
	reply         chan error
}

type pending struct {
	entry sqlstore.AuditEntry
	event Event
	done  chan error // nil with DurabilityBatch
}

// Open starts a trail on opts.Store, continuing its chain.
func Open(ctx context.Context, opts Options) (*Trail, error) {
	if opts.Store == nil {
		return nil, errors.New("audit: a store is required")
	}
	switch opts.Durability {
	case "":
		opts.Durability = DurabilitySync
	case DurabilitySync, DurabilityBatch:
	default:
		return nil, fmt.Errorf("audit: unknown durability %q", opts.Durability)
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 10 * time.Millisecond
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 8192
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Minute
	}
	if opts.CheckpointEntries <= 0 {
		opts.CheckpointEntries = 10000
	}
	if opts.SinkQueue <= 0 {
		opts.SinkQueue = 8192
	}
	if opts.SinkRetry <= 0 {
		opts.SinkRetry = 100 * time.Millisecond
	}
	if opts.SinkRetryMax <= 0 {
		opts.SinkRetryMax = 30 * time.Second
	}
	opts.SinkRetryMax = max(opts.SinkRetryMax, opts.SinkRetry)
	if opts.SinkDrainTimeout <= 0 {
		opts.SinkDrainTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	t := &Trail{
		opts: opts, store: opts.Store, now: opts.Now, log: opts.Logger,
		queue:   make(chan *pending, opts.QueueSize),
		syncReq: make(chan syncRequest),
		done:    make(chan struct{}),
		abort:   make(chan struct{}),
	}
	var err error
	if t.head, err = t.store.AuditHead(ctx); err != nil {
		return nil, err
	}
	cp, err := t.store.LatestAuditCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	t.lastCP, t.lastCPAt = cp.Seq, cp.Created
	t.sinceCP = int(t.head.Seq - cp.Seq)
	src, _ := opts.Store.(SinkSource)
	for _, s := range opts.Sinks {
		t.sinks = append(t.sinks, startSink(s, src, t.head.Seq, opts.SinkQueue, opts.SinkRetry, opts.SinkRetryMax, t.log))
	}
	if len(opts.Detectors) > 0 {
		t.detectQ = make(chan []Entry, opts.SinkQueue)
		t.detectEnd = make(chan struct{})
		go t.detect(t.detectQ)
	}
	go t.run()
	return t, nil
}

var _ Recorder = (*Trail)(nil)

// Record implements Recorder: it maps e to its AuditEvent on the caller's goroutine and queues it
// for the appender. With DurabilitySync it returns once the event is committed, with the commit's
// error; with DurabilityBatch once it is queued. A cancelled ctx stops the wait, not the append.
func (t *Trail) Record(ctx context.Context, e Event) error {
	return t.record(ctx, e, false)
}

// record queues e; internal events (alerts) are accepted while Close drains the detectors.
func (t *Trail) record(ctx context.Context, e Event, internal bool) error {
	if err := normalize(&e, t.now()); err != nil {
		return err
	}
	id := newID()
	ae, err := BuildAuditEvent(e, id, t.opts.Source)
	if err != nil {
		return fmt.Errorf("audit: build AuditEvent: %w", err)
	}
	p := &pending{entry: entryFromEvent(e, id, ae), event: e}
	if t.opts.Durability == DurabilitySync {
		p.done = make(chan error, 1)
	}
	t.mu.RLock()
	if t.queueClosed || (t.closed && !internal) {
		t.mu.RUnlock()
		return ErrClosed
	}
	select {
	case t.queue <- p:
		t.mu.RUnlock()
	case <-ctx.Done():
		t.mu.RUnlock()
		return fmt.Errorf("audit: queue full: %w", ctx.Err())
	}
	if p.done == nil {
		return nil
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Checkpoint commits what is queued and signs a checkpoint of the head now (when the head moved
// since the last one).
func (t *Trail) Checkpoint(ctx context.Context) error {
	return t.sync(ctx, syncRequest{checkpoint: true})
}

func (t *Trail) sync(ctx context.Context, req syncRequest) error {
	reply := make(chan error, 1)
	req.reply = reply
	select {
	case t.syncReq <- req:
	case <-t.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting events, commits every queued event, lets the detectors finish (recording
// their alerts), signs a last checkpoint, and drains the sinks. When ctx ends first, queued events
// not yet committed are logged as lost and Close returns ctx's error.
func (t *Trail) Close(ctx context.Context) error {
	// When ctx ends, stop retrying failed commits so that the queue drains and blocked callers
	// return: Close then cannot hang on a store that is down.
	stop := context.AfterFunc(ctx, func() { t.abortOnce.Do(func() { close(t.abort) }) })
	defer stop()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		<-t.done
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	// Commit what callers queued so the detectors see it, then let them finish while the
	// appender still takes their alerts.
	err := t.sync(ctx, syncRequest{stopDetectors: true})
	if t.detectEnd != nil {
		select {
		case <-t.detectEnd:
		case <-ctx.Done():
		}
	}
	t.mu.Lock()
	t.queueClosed = true
	close(t.queue)
	t.mu.Unlock()
	<-t.done
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if t.detectEnd != nil {
		<-t.detectEnd
	}
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.opts.SinkDrainTimeout)
	defer cancel()
	if ctx.Err() == nil {
		stopDrain := context.AfterFunc(ctx, cancel)
		defer stopDrain()
	} else {
		cancel()
	}
	var wg sync.WaitGroup
	for _, s := range t.sinks {
		wg.Go(func() { s.stop(drain) })
	}
	wg.Wait()
	return err
}

// Stats returns the trail's counters.
func (t *Trail) Stats() Stats {
	s := Stats{
		Appended: t.appended.Load(), Flushes: t.flushes.Load(), FailedFlushes: t.failedFlushes.Load(),
		Checkpoints: t.checkpoints.Load(), Alerts: t.alerts.Load(), DetectorDropped: t.detectDropped.Load(),
		SinkDropped: map[string]int64{}, SinkFailed: map[string]int64{}, SinkDelivered: map[string]int64{},
	}
	for _, r := range t.sinks {
		s.SinkDropped[r.sink.Name()] = r.dropped.Load()
		s.SinkFailed[r.sink.Name()] = r.failed.Load()
		s.SinkDelivered[r.sink.Name()] = r.delivered.Load()
	}
	return s
}

// run is the appender goroutine: it owns the head and is the only writer of the chain.
func (t *Trail) run() {
	defer close(t.done)
	ctx := context.Background()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerC <-chan time.Time
	var cpC <-chan time.Time
	if t.opts.Signer != nil {
		tick := time.NewTicker(t.opts.CheckpointInterval)
		defer tick.Stop()
		cpC = tick.C
	}
	var batch []*pending
	for {
		select {
		case p, ok := <-t.queue:
			if ok {
				batch = append(batch, p)
				batch, ok = t.drain(batch)
			}
			if !ok {
				t.flush(ctx, batch)
				if t.detectQ != nil { // Close gave up before the detectors were stopped
					close(t.detectQ)
					t.detectQ = nil
				}
				if err := t.checkpoint(ctx); err != nil {
					t.log.Error("audit: final checkpoint", "err", err)
				}
				return
			}
			if t.opts.Durability == DurabilitySync || len(batch) >= t.opts.MaxBatch {
				t.flush(ctx, batch)
				batch = batch[:0]
				timer.Stop()
				timerC = nil
			} else if timerC == nil {
				timer.Reset(t.opts.FlushInterval)
				timerC = timer.C
			}
		case <-timerC:
			timerC = nil
			t.flush(ctx, batch)
			batch = batch[:0]
		case <-cpC:
			if t.head.Seq > t.lastCP && t.now().Sub(t.lastCPAt) >= t.opts.CheckpointInterval/2 {
				if err := t.checkpoint(ctx); err != nil {
					t.log.Error("audit: checkpoint", "err", err)
				}
			}
		case req := <-t.syncReq:
			for more := true; more; {
				batch, _ = t.drain(batch)
				more = len(batch) >= t.opts.MaxBatch
				t.flush(ctx, batch)
				batch = batch[:0]
			}
			timer.Stop()
			timerC = nil
			if req.stopDetectors && t.detectQ != nil {
				close(t.detectQ)
				t.detectQ = nil
			}
			if req.checkpoint {
				req.reply <- t.checkpoint(ctx)
			} else {
				req.reply <- nil
			}
		}
	}
}

// drain adds what is queued, up to MaxBatch, without waiting. ok is false when the queue is
// closed and empty.
func (t *Trail) drain(batch []*pending) ([]*pending, bool) {
	for len(batch) < t.opts.MaxBatch {
		select {
		case p, ok := <-t.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, p)
		default:
			return batch, true
		}
	}
	return batch, true
}

// flush commits batch as one transaction. With DurabilitySync a failure is reported to the
// waiting callers (and nothing is retried: they saw the error). With DurabilityBatch nobody waits,
// so the batch is retried with backoff until it commits or Close gives up; meanwhile the queue
// fills and Record blocks, so the server slows down rather than losing events silently.
func (t *Trail) flush(ctx context.Context, batch []*pending) {
	if len(batch) == 0 {
		return
	}
	entries := make([]sqlstore.AuditEntry, len(batch))
	for i, p := range batch {
		entries[i] = p.entry
	}
	backoff := 50 * time.Millisecond
	var committed []sqlstore.AuditEntry
	for {
		var err error
		committed, err = t.store.AppendAudit(ctx, func(head sqlstore.AuditHead) ([]sqlstore.AuditEntry, error) {
			es := slices.Clone(entries)
			chain(head, es)
			return es, nil
		})
		if err == nil {
			break
		}
		t.failedFlushes.Add(1)
		if t.opts.Durability == DurabilitySync {
			t.log.Error("audit: append failed", "events", len(batch), "err", err)
			for _, p := range batch {
				p.done <- fmt.Errorf("audit: append: %w", err)
			}
			return
		}
		t.log.Error("audit: append failed, retrying", "events", len(batch), "retry_in", backoff, "err", err)
		select {
		case <-t.abort:
			t.log.Error("audit: events lost at shutdown: the store did not accept them", "events", len(batch),
				"first_id", batch[0].entry.ID)
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	t.flushes.Add(1)
	t.appended.Add(int64(len(committed)))
	last := committed[len(committed)-1]
	t.head = sqlstore.AuditHead{Seq: last.Seq, Hash: last.Hash}
	t.sinceCP += len(committed)
	for _, p := range batch {
		if p.done != nil {
			p.done <- nil
		}
	}
	out := make([]Entry, len(committed))
	for i, e := range committed {
		out[i] = Entry{Seq: e.Seq, Hash: hex.EncodeToString(e.Hash), PrevHash: hex.EncodeToString(e.PrevHash), AuditEvent: e.Event, Event: batch[i].event}
	}
	for _, s := range t.sinks {
		s.offer(out)
	}
	if t.detectQ != nil {
		select {
		case t.detectQ <- out:
		default:
			t.detectDropped.Add(1)
		}
	}
	if t.sinceCP >= t.opts.CheckpointEntries {
		if err := t.checkpoint(ctx); err != nil {
			t.log.Error("audit: checkpoint", "err", err)
		}
	}
}

// checkpoint signs and stores a checkpoint of the head if it moved since the last one.
func (t *Trail) checkpoint(ctx context.Context) error {
	if t.opts.Signer == nil || t.head.Seq == 0 || t.head.Seq == t.lastCP {
		return nil
	}
	now := t.now().UTC()
	c := Checkpoint{Seq: t.head.Seq, Head: hex.EncodeToString(t.head.Hash), Time: now, Origin: t.opts.Source.Observer}
	jws, err := signCheckpoint(t.opts.Signer, c)
	if err != nil {
		return err
	}
	if err := t.store.PutAuditCheckpoint(ctx, sqlstore.AuditCheckpoint{Seq: c.Seq, HeadHash: t.head.Hash, Created: now, JWS: jws}); err != nil {
		return err
	}
	t.lastCP, t.lastCPAt, t.sinceCP = c.Seq, now, 0
	t.checkpoints.Add(1)
	return nil
}

// detect runs the detectors over committed events and records the alerts they raise.
// detect runs the detectors over what the appender sends on q. q is passed in rather than read
// from t, because the appender clears t.detectQ when it closes the queue.
func (t *Trail) detect(q <-chan []Entry) {
	defer close(t.detectEnd)
	for entries := range q {
		for _, e := range entries {
			if e.Event.Action == ActionAlert {
				continue
			}
			for _, d := range t.opts.Detectors {
				for _, a := range d.Observe(e.Event) {
					t.raise(a)
				}
			}
		}
	}
}

func (t *Trail) raise(a Alert) {
	t.alerts.Add(1)
	t.log.Warn("audit alert", "detector", a.Detector, "key", a.Key, "count", a.Count, "window", a.Window, "detail", a.Detail)
	if t.opts.OnAlert != nil {
		t.opts.OnAlert(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.record(ctx, a.Event(), true); err != nil {
		t.log.Error("audit: recording alert", "detector", a.Detector, "err", err)
	}
}

// newID returns a random AuditEvent id (128 bits, hex).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
