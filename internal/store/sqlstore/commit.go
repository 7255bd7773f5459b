package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// groupCommitter runs the write transactions of an SQLite store several to one database
// transaction: SQLite has a single writer and every durable commit costs an fsync, so concurrent
// writers that each commit alone are bounded by the disk's fsync rate. The committer takes the
// writes waiting in its queue (up to maxGroup), runs each in its own SAVEPOINT, so that a write
// that fails is rolled back alone and its neighbours are unaffected, commits once, and only then
// answers every caller: a write is never acknowledged before it is durable.
//
// Writes in a group run one after another in queue order, exactly as if each had its own
// transaction; a write sees the effects of the writes before it.
type groupCommitter struct {
	db    *sql.DB
	queue chan *groupWrite
	// mu orders queueing against close: run queues under the read lock and only while closed is
	// false, so once close holds the write lock nothing new can enter the queue, and the loop's
	// final drain answers every write that did.
	mu       sync.RWMutex
	closed   bool
	stop     chan struct{}
	done     sync.WaitGroup
	maxGroup int
}

type groupWrite struct {
	ctx    context.Context
	fn     func(tx *sql.Tx) error
	result chan error
}

// maxGroup bounds one commit: enough to amortise the fsync, small enough that a caller does not
// wait behind a long batch.
const maxGroup = 64

func newGroupCommitter(db *sql.DB) *groupCommitter {
	g := &groupCommitter{db: db, queue: make(chan *groupWrite, 4*maxGroup), stop: make(chan struct{}), maxGroup: maxGroup}
	g.done.Add(1)
	go g.loop()
	return g
}

// run queues fn and waits for its outcome. A context that ends before fn starts cancels it; once
// fn ran, run waits for the commit so that the caller learns whether it is durable.
func (g *groupCommitter) run(ctx context.Context, fn func(tx *sql.Tx) error) error {
	w := &groupWrite{ctx: ctx, fn: fn, result: make(chan error, 1)}
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return errStoreClosed
	}
	// The loop keeps taking from the queue until close holds the lock, so this send ends.
	select {
	case g.queue <- w:
	case <-ctx.Done():
		g.mu.RUnlock()
		return ctx.Err()
	}
	g.mu.RUnlock()
	return <-w.result
}

var errStoreClosed = errors.New("sqlstore: the store is closed")

// close stops the loop after answering every queued write; it may be called more than once.
func (g *groupCommitter) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	g.done.Wait()
}

func (g *groupCommitter) loop() {
	defer g.done.Done()
	for {
		var first *groupWrite
		select {
		case first = <-g.queue:
		case <-g.stop:
			// Answer what is still queued; nothing new can arrive once stop is closed.
			for {
				select {
				case w := <-g.queue:
					w.result <- errStoreClosed
				default:
					return
				}
			}
		}
		group := []*groupWrite{first}
	fill:
		for len(group) < g.maxGroup {
			select {
			case w := <-g.queue:
				group = append(group, w)
			default:
				break fill
			}
		}
		g.commit(group)
	}
}

// commit runs one group in one transaction.
func (g *groupCommitter) commit(group []*groupWrite) {
	errs := make([]error, len(group))
	tx, err := g.db.BeginTx(context.Background(), nil)
	if err != nil {
		for _, w := range group {
			w.result <- fmt.Errorf("sqlstore: begin: %w", err)
		}
		return
	}
	ran := 0
	for i, w := range group {
		if err := w.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = runInSavepoint(w.ctx, tx, w.fn)
		if errs[i] == nil {
			ran++
		}
	}
	var commitErr error
	if ran == 0 {
		commitErr = tx.Rollback()
	} else if commitErr = tx.Commit(); commitErr != nil {
		commitErr = fmt.Errorf("sqlstore: commit: %w", commitErr)
	}
	for i, w := range group {
		if errs[i] == nil && commitErr != nil {
			errs[i] = commitErr
		}
		w.result <- errs[i]
	}
}

// runInSavepoint runs fn so that its writes are undone alone when it fails or panics.
func runInSavepoint(ctx context.Context, tx *sql.Tx, fn func(tx *sql.Tx) error) (err error) {
	if _, err := tx.ExecContext(context.Background(), "SAVEPOINT write_group"); err != nil {
		return fmt.Errorf("sqlstore: savepoint: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlstore: write panicked: %v", p)
		}
		if err != nil {
			if _, rerr := tx.ExecContext(context.Background(), "ROLLBACK TO write_group"); rerr != nil {
				err = fmt.Errorf("%w (and rolling back: %w)", err, rerr)
			}
		}
		if _, rerr := tx.ExecContext(context.Background(), "RELEASE write_group"); rerr != nil && err == nil {
			err = fmt.Errorf("sqlstore: release savepoint: %w", rerr)
		}
	}()
	return fn(tx)
}
