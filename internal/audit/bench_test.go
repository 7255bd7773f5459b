package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// BenchmarkAppend measures appends/s at 1, 8 and 64 concurrent callers, on SQLite with
// synchronous=FULL (every commit reaches the disk), for:
//
//	baseline:     each caller commits its own entry in its own transaction (hash chain included,
//	              no appender): what a plain synchronous audit insert costs;
//	trail-sync:   Trail with DurabilitySync (group commit; Record returns after the commit);
//	trail-batch:  Trail with DurabilityBatch, 10ms flush interval (Record returns when queued;
//	              the clock stops after Close has committed everything).
//
// Compare the rows of one run: docs/audit.md has the numbers and ratios.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"baseline", "trail-sync", "trail-batch"} {
		for _, callers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", mode, callers), func(b *testing.B) {
				s := openStore(b)
				ctx := context.Background()
				var record func(e audit.Event) error
				var tr *audit.Trail
				switch mode {
				case "baseline":
					record = func(e audit.Event) error { return baselineAppend(ctx, s, e) }
				default:
					d := audit.DurabilitySync
					if mode == "trail-batch" {
						d = audit.DurabilityBatch
					}
					var err error
					tr, err = audit.Open(ctx, audit.Options{Store: s, Durability: d, Logger: quiet, FlushInterval: 10 * time.Millisecond})
					if err != nil {
						b.Fatal(err)
					}
					record = func(e audit.Event) error { return tr.Record(ctx, e) }
				}
				ev := readEvent(7, time.Time{})
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N / callers
				for c := range callers {
					n := per
					if c == 0 {
						n += b.N % callers
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range n {
							if err := record(ev); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				if tr != nil {
					if err := tr.Close(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
				if tr != nil {
					st := tr.Stats()
					b.ReportMetric(float64(st.Appended)/float64(max(st.Flushes, 1)), "events/commit")
				} else {
					b.ReportMetric(1, "events/commit")
				}
			})
		}
	}
}

// baselineAppend commits one event in its own transaction, chained, without the appender.
func baselineAppend(ctx context.Context, s *sqlstore.Store, e audit.Event) error {
	b, err := audit.BuildAuditEvent(e, fmt.Sprint(time.Now().UnixNano()), audit.Source{})
	if err != nil {
		return err
	}
	_, err = s.AppendAudit(ctx, func(head sqlstore.AuditHead) ([]sqlstore.AuditEntry, error) {
		prev := head.Hash
		if head.Seq == 0 {
			prev = audit.GenesisHash
		}
		en := sqlstore.AuditEntry{Seq: head.Seq + 1, ID: fmt.Sprint(head.Seq + 1), Recorded: time.Now().UTC(), Action: string(e.Action),
			Outcome: "success", ClientID: e.ClientID, Subject: e.Subject, Patients: []string{"p7"}, PrevHash: prev, Event: b}
		en.Hash = audit.EntryHash(en)
		return []sqlstore.AuditEntry{en}, nil
	})
	return err
}

// BenchmarkEntryHash is the chain's own cost per entry (SHA-256 over the canonical encoding).
func BenchmarkEntryHash(b *testing.B) {
	ev, _ := audit.BuildAuditEvent(readEvent(7, time.Now()), "x", audit.Source{})
	e := sqlstore.AuditEntry{Seq: 1, ID: "x", Action: "read", Outcome: "success", ClientID: "app", Subject: "alice", Patients: []string{"p1"}, PrevHash: audit.GenesisHash, Event: ev}
	b.SetBytes(int64(len(ev)))
	for b.Loop() {
		audit.EntryHash(e)
	}
}

// BenchmarkBuildAuditEvent is the mapping cost, paid on the caller's goroutine.
func BenchmarkBuildAuditEvent(b *testing.B) {
	e := readEvent(7, time.Now())
	e.Outcome = audit.OutcomeSuccess
	for b.Loop() {
		if _, err := audit.BuildAuditEvent(e, "x", audit.Source{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify reads and checks a chain of 20 000 entries with its checkpoints.
func BenchmarkVerify(b *testing.B) {
	s := openStore(b)
	key := newTestKey(b, "k1")
	ctx := context.Background()
	tr, err := audit.Open(ctx, audit.Options{Store: s, Durability: audit.DurabilityBatch, Signer: key.signer, CheckpointEntries: 1000, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	const n = 20000
	for i := range n {
		if err := tr.Record(ctx, readEvent(i, time.Time{})); err != nil {
			b.Fatal(err)
		}
	}
	if err := tr.Close(ctx); err != nil {
		b.Fatal(err)
	}
	v := key.verifier()
	b.ResetTimer()
	for b.Loop() {
		rep, err := audit.Verify(ctx, s, v)
		if err != nil || !rep.OK() || rep.Entries != n {
			b.Fatalf("Verify = %+v, %v", rep, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
