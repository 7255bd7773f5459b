package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func TestAuditAppendContract(t *testing.T) { forEachDriver(t, testAuditAppendContract) }

func testAuditAppendContract(t *testing.T, driver string) {
	s := openDriver(t, driver)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 12, 0, 0, 123456000, time.FixedZone("X", 3600))
	mk := func(seq int64, id string) sqlstore.AuditEntry {
		return sqlstore.AuditEntry{Seq: seq, ID: id, Recorded: now, Action: "read", Outcome: "success", Patients: []string{"a", "b", "a"},
			PrevHash: make([]byte, 32), Hash: make([]byte, 32), Event: []byte(`{"resourceType":"AuditEvent"}`)}
	}
	if _, err := s.AppendAudit(ctx, func(h sqlstore.AuditHead) ([]sqlstore.AuditEntry, error) {
		if h.Seq != 0 {
			t.Errorf("head of an empty chain = %d", h.Seq)
		}
		return []sqlstore.AuditEntry{mk(1, "x1"), mk(2, "x2")}, nil
	}); err != nil {
		t.Fatal(err)
	}
	// Entries that do not follow the head are refused and nothing is written.
	_, err := s.AppendAudit(ctx, func(h sqlstore.AuditHead) ([]sqlstore.AuditEntry, error) {
		return []sqlstore.AuditEntry{mk(h.Seq+2, "x4")}, nil
	})
	if !errors.Is(err, sqlstore.ErrAuditHeadMoved) {
		t.Errorf("AppendAudit with a gap = %v, want ErrAuditHeadMoved", err)
	}
	// A failing build rolls back.
	boom := errors.New("boom")
	if _, err := s.AppendAudit(ctx, func(sqlstore.AuditHead) ([]sqlstore.AuditEntry, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("AppendAudit = %v, want the build error", err)
	}
	h, err := s.AuditHead(ctx)
	if err != nil || h.Seq != 2 {
		t.Fatalf("AuditHead = %+v, %v; want seq 2", h, err)
	}
	e, err := s.GetAuditEntry(ctx, "x2")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Recorded.Equal(now) || e.Recorded.Location() != time.UTC || len(e.Patients) != 3 {
		t.Errorf("GetAuditEntry = recorded %v, patients %v; want %v in UTC and the patients as stored", e.Recorded, e.Patients, now)
	}
	if _, err := s.GetAuditEntry(ctx, "nope"); !errors.Is(err, sql.ErrNoRows) {
		t.Errorf("GetAuditEntry(nope) = %v, want sql.ErrNoRows", err)
	}
	var n int
	if err := s.ReadDB().QueryRow(`SELECT count(*) FROM audit_patients`).Scan(&n); err != nil || n != 4 {
		t.Errorf("patient index rows = %d, %v; want 4 (duplicates collapsed)", n, err)
	}
	if err := s.PutAuditCheckpoint(ctx, sqlstore.AuditCheckpoint{Seq: 2, HeadHash: make([]byte, 32), Created: now, JWS: "a.b.c"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAuditCheckpoint(ctx, sqlstore.AuditCheckpoint{Seq: 2, HeadHash: make([]byte, 32), Created: now, JWS: "other"}); err != nil {
		t.Fatal(err)
	}
	c, err := s.LatestAuditCheckpoint(ctx)
	if err != nil || c.Seq != 2 || c.JWS != "a.b.c" {
		t.Errorf("LatestAuditCheckpoint = %+v, %v; want the first checkpoint at 2 kept", c, err)
	}
}
