package audit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func verifyOK(t *testing.T, s *sqlstore.Store, v audit.CheckpointVerifier, entries int64) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(context.Background(), s, v)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("Verify = %v", rep.Problems)
	}
	if rep.Entries != entries {
		t.Fatalf("Verify read %d entries, want %d", rep.Entries, entries)
	}
	return rep
}

func TestRecordConcurrent(t *testing.T) {
	for _, d := range []audit.Durability{audit.DurabilitySync, audit.DurabilityBatch} {
		t.Run(string(d), func(t *testing.T) {
			s := openStore(t)
			key := newTestKey(t, "k1")
			tr := openTrail(t, s, audit.Options{Durability: d, Signer: key.signer, CheckpointEntries: 100, FlushInterval: time.Millisecond})
			const workers, each = 64, 20
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						errs <- tr.Record(context.Background(), readEvent(w*each+i, time.Time{}))
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatalf("Record: %v", err)
				}
			}
			if err := tr.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			rep := verifyOK(t, s, key.verifier(), workers*each)
			st := tr.Stats()
			if st.Appended != workers*each || st.Flushes > st.Appended {
				t.Errorf("Stats = %+v", st)
			}
			if rep.LastSignedSeq != workers*each {
				t.Errorf("LastSignedSeq = %d, want %d (final checkpoint at Close)", rep.LastSignedSeq, workers*each)
			}
		})
	}
}

func TestSyncRecordIsCommittedOnReturn(t *testing.T) {
	s := openStore(t)
	tr := openTrail(t, s, audit.Options{})
	if err := tr.Record(context.Background(), readEvent(1, time.Time{})); err != nil {
		t.Fatal(err)
	}
	// Without Close or any flush call: the entry is in the database already.
	h, err := s.AuditHead(context.Background())
	if err != nil || h.Seq != 1 {
		t.Fatalf("AuditHead = %+v, %v; want seq 1", h, err)
	}
}

func TestBatchRecordIsCommittedByClose(t *testing.T) {
	s := openStore(t)
	tr := openTrail(t, s, audit.Options{Durability: audit.DurabilityBatch, FlushInterval: time.Hour})
	for i := range 100 {
		if err := tr.Record(context.Background(), readEvent(i, time.Time{})); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, s, nil, 100)
	if err := tr.Record(context.Background(), readEvent(1, time.Time{})); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Record after Close = %v, want ErrClosed", err)
	}
}

func TestRecordRejectsBadEvents(t *testing.T) {
	tr := openTrail(t, openStore(t), audit.Options{})
	for _, e := range []audit.Event{{}, {Action: "steal"}, {Action: audit.ActionRead, Outcome: "meh"}} {
		if err := tr.Record(context.Background(), e); err == nil {
			t.Errorf("Record(%+v) = nil, want an error", e)
		}
	}
}

func TestChainContinuesAcrossReopenAndWriters(t *testing.T) {
	s := openStore(t)
	fill(t, s, 5, nil)
	// Two trails on one store, as two processes would be: the head is read inside each
	// transaction, so the chain does not fork.
	a := openTrail(t, s, audit.Options{})
	b := openTrail(t, s, audit.Options{})
	var wg sync.WaitGroup
	for _, tr := range []*audit.Trail{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := tr.Record(context.Background(), readEvent(i, time.Time{})); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	verifyOK(t, s, nil, 105)
}

// failingStore fails AppendAudit a number of times, then behaves.
type failingStore struct {
	*sqlstore.Store
	failures atomic.Int64
}

func (f *failingStore) AppendAudit(ctx context.Context, build func(sqlstore.AuditHead) ([]sqlstore.AuditEntry, error)) ([]sqlstore.AuditEntry, error) {
	if f.failures.Add(-1) >= 0 {
		return nil, errors.New("disk on fire")
	}
	return f.Store.AppendAudit(ctx, build)
}

func TestSyncAppendFailureIsReported(t *testing.T) {
	s := openStore(t)
	fs := &failingStore{Store: s}
	fs.failures.Store(1)
	tr := openTrail(t, fs, audit.Options{})
	if err := tr.Record(context.Background(), readEvent(1, time.Time{})); err == nil {
		t.Fatal("Record = nil while the store fails, want the error")
	}
	if err := tr.Record(context.Background(), readEvent(2, time.Time{})); err != nil {
		t.Fatalf("Record after recovery: %v", err)
	}
	tr.Close(context.Background())
	verifyOK(t, s, nil, 1)
}

func TestBatchAppendRetriesUntilTheStoreRecovers(t *testing.T) {
	s := openStore(t)
	fs := &failingStore{Store: s}
	fs.failures.Store(2)
	tr := openTrail(t, fs, audit.Options{Durability: audit.DurabilityBatch, FlushInterval: time.Millisecond})
	for i := range 10 {
		if err := tr.Record(context.Background(), readEvent(i, time.Time{})); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, s, nil, 10)
	if st := tr.Stats(); st.FailedFlushes != 2 {
		t.Errorf("FailedFlushes = %d, want 2", st.FailedFlushes)
	}
}

func TestCloseGivesUpOnADeadStore(t *testing.T) {
	s := openStore(t)
	fs := &failingStore{Store: s}
	fs.failures.Store(1 << 40)
	tr := openTrail(t, fs, audit.Options{Durability: audit.DurabilityBatch, FlushInterval: time.Millisecond, QueueSize: 4, MaxBatch: 2})
	// Fill the queue; further Records block until their context ends.
	ctx, cancel := context.WithCancel(context.Background())
	blocked := make(chan error)
	go func() {
		for {
			if err := tr.Record(ctx, readEvent(1, time.Time{})); err != nil {
				blocked <- err
				return
			}
		}
	}()
	closeCtx, closeCancel := context.WithCancel(context.Background())
	closed := make(chan error)
	go func() { closed <- tr.Close(closeCtx) }()
	closeCancel() // the operator gives up waiting
	if err := <-closed; !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v, want context.Canceled", err)
	}
	cancel()
	if err := <-blocked; err == nil {
		t.Error("Record kept succeeding after Close")
	}
}
