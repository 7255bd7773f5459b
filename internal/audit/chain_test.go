package audit_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func entry(t *testing.T, s *sqlstore.Store, seq int64) sqlstore.AuditEntry {
	t.Helper()
	var out sqlstore.AuditEntry
	found := false
	if err := s.ScanAudit(context.Background(), seq-1, func(e sqlstore.AuditEntry) error {
		if !found && e.Seq == seq {
			out, found = e, true
		}
		return nil
	}); err != nil || !found {
		t.Fatalf("entry %d: found=%v err=%v", seq, found, err)
	}
	return out
}

func exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// renumber adds delta to the seq of every entry with seq >= from, in both tables.
func renumber(t *testing.T, db *sql.DB, from, delta int64) {
	t.Helper()
	exec(t, db, `UPDATE audit_log SET seq = -(seq + $1) WHERE seq >= $2`, delta, from)
	exec(t, db, `UPDATE audit_log SET seq = -seq WHERE seq < 0`)
	exec(t, db, `UPDATE audit_patients SET seq = -(seq + $1) WHERE seq >= $2`, delta, from)
	exec(t, db, `UPDATE audit_patients SET seq = -seq WHERE seq < 0`)
	exec(t, db, `UPDATE audit_agents SET seq = -(seq + $1) WHERE seq >= $2`, delta, from)
	exec(t, db, `UPDATE audit_agents SET seq = -seq WHERE seq < 0`)
}

// rehashFrom recomputes the hashes of every entry from seq on, as an attacker with the code would.
func rehashFrom(t *testing.T, s *sqlstore.Store, seq int64) {
	t.Helper()
	var all []sqlstore.AuditEntry
	if err := s.ScanAudit(context.Background(), 0, func(e sqlstore.AuditEntry) error { all = append(all, e); return nil }); err != nil {
		t.Fatal(err)
	}
	prev := audit.GenesisHash
	for _, e := range all {
		if e.Seq >= seq {
			e.PrevHash = prev
			e.Hash = audit.EntryHash(e)
			exec(t, s.DB(), `UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3`, e.PrevHash, e.Hash, e.Seq)
		}
		prev = e.Hash
	}
}

func TestVerifyIntact(t *testing.T) {
	s := openStore(t)
	key := newTestKey(t, "k1")
	fill(t, s, 35, key)
	rep, err := audit.Verify(context.Background(), s, key.verifier())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("Verify of an intact chain = %v", rep.Problems)
	}
	if rep.Entries != 35 || rep.HeadSeq != 35 {
		t.Errorf("Entries, HeadSeq = %d, %d, want 35, 35", rep.Entries, rep.HeadSeq)
	}
	// checkpoints at 10, 20, 30 and the final one at 35 (Close)
	if rep.Checkpoints != 4 || rep.Signed != 4 || rep.LastSignedSeq != 35 {
		t.Errorf("Checkpoints, Signed, LastSignedSeq = %d, %d, %d, want 4, 4, 35", rep.Checkpoints, rep.Signed, rep.LastSignedSeq)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, s *sqlstore.Store)
		seq    int64
		kind   audit.ProblemKind
	}{
		{"alter event", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `UPDATE audit_log SET event = replace(event, '"outcome":"0"', '"outcome":"4"') WHERE seq = 17`)
		}, 17, audit.ProblemAltered},
		{"alter indexed column", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `UPDATE audit_log SET client_id = 'other' WHERE seq = 5`)
		}, 5, audit.ProblemAltered},
		{"alter patients", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `UPDATE audit_log SET patients = '[]' WHERE seq = 8`)
		}, 8, audit.ProblemAltered},
		{"alter and rehash one entry", func(t *testing.T, s *sqlstore.Store) {
			e := entry(t, s, 12)
			e.ClientID = "other"
			exec(t, s.DB(), `UPDATE audit_log SET client_id = $1, hash = $2 WHERE seq = 12`, e.ClientID, audit.EntryHash(e))
		}, 12, audit.ProblemRehashed},
		{"delete", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `DELETE FROM audit_log WHERE seq = 9`)
			exec(t, s.DB(), `DELETE FROM audit_patients WHERE seq = 9`)
			exec(t, s.DB(), `DELETE FROM audit_agents WHERE seq = 9`)
		}, 9, audit.ProblemDeleted},
		{"delete and renumber", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `DELETE FROM audit_log WHERE seq = 9`)
			exec(t, s.DB(), `DELETE FROM audit_patients WHERE seq = 9`)
			exec(t, s.DB(), `DELETE FROM audit_agents WHERE seq = 9`)
			renumber(t, s.DB(), 10, -1)
		}, 9, audit.ProblemDeleted},
		{"insert", func(t *testing.T, s *sqlstore.Store) {
			prev := entry(t, s, 20)
			renumber(t, s.DB(), 21, 1)
			fake := prev
			fake.Seq, fake.ID, fake.ClientID, fake.PrevHash = 21, "forged", "ghost", prev.Hash
			fake.Hash = audit.EntryHash(fake)
			exec(t, s.DB(), `INSERT INTO audit_log (seq, id, recorded_us, action, outcome, client_id, subject, fhir_user, source_ip, request_id, patients, prev_hash, hash, event)
				SELECT 21, $1, recorded_us, action, outcome, $2, subject, fhir_user, source_ip, request_id, patients, $3, $4, event FROM audit_log WHERE seq = 20`,
				fake.ID, fake.ClientID, fake.PrevHash, fake.Hash)
			exec(t, s.DB(), `INSERT INTO audit_patients (patient, seq) SELECT patient, 21 FROM audit_patients WHERE seq = 20`)
			exec(t, s.DB(), `INSERT INTO audit_agents (agent, seq) SELECT agent, 21 FROM audit_agents WHERE seq = 20 AND agent <> 'app'`)
			exec(t, s.DB(), `INSERT INTO audit_agents (agent, seq) VALUES ('ghost', 21)`)
		}, 21, audit.ProblemInserted},
		{"reorder", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `UPDATE audit_log SET seq = -1 WHERE seq = 14`)
			exec(t, s.DB(), `UPDATE audit_log SET seq = 14 WHERE seq = 15`)
			exec(t, s.DB(), `UPDATE audit_log SET seq = 15 WHERE seq = -1`)
			exec(t, s.DB(), `UPDATE audit_patients SET seq = -1 WHERE seq = 14`)
			exec(t, s.DB(), `UPDATE audit_patients SET seq = 14 WHERE seq = 15`)
			exec(t, s.DB(), `UPDATE audit_patients SET seq = 15 WHERE seq = -1`)
			exec(t, s.DB(), `UPDATE audit_agents SET seq = -1 WHERE seq = 14`)
			exec(t, s.DB(), `UPDATE audit_agents SET seq = 14 WHERE seq = 15`)
			exec(t, s.DB(), `UPDATE audit_agents SET seq = 15 WHERE seq = -1`)
		}, 14, audit.ProblemReordered},
		{"truncate the tail", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `DELETE FROM audit_log WHERE seq > 28`)
			exec(t, s.DB(), `DELETE FROM audit_patients WHERE seq > 28`)
			exec(t, s.DB(), `DELETE FROM audit_agents WHERE seq > 28`)
		}, 29, audit.ProblemTruncated},
		{"alter and rehash the rest of the chain", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `UPDATE audit_log SET subject = 'mallory' WHERE seq = 23`)
			rehashFrom(t, s, 23)
		}, 21, audit.ProblemRewritten},
		{"patient index edited", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `DELETE FROM audit_patients WHERE seq = 3`)
		}, 0, audit.ProblemIndex},
		{"agent index edited", func(t *testing.T, s *sqlstore.Store) {
			exec(t, s.DB(), `UPDATE audit_agents SET agent = 'someone-else' WHERE seq = 4 AND agent = 'alice'`)
		}, 0, audit.ProblemIndex},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			key := newTestKey(t, "k1")
			fill(t, s, 35, key)
			tc.tamper(t, s)
			rep, err := audit.Verify(context.Background(), s, key.verifier())
			if err != nil {
				t.Fatal(err)
			}
			first, bad := rep.FirstBad()
			if !bad {
				t.Fatalf("Verify after %s found nothing", tc.name)
			}
			if first.Seq != tc.seq || first.Kind != tc.kind {
				t.Errorf("first problem = %v, want entry %d %s (all: %v)", first, tc.seq, tc.kind, rep.Problems)
			}
		})
	}
}

func TestVerifyCheckpoints(t *testing.T) {
	tests := []struct {
		name     string
		tamper   func(t *testing.T, s *sqlstore.Store, other *testKey)
		verifier func(k, other *testKey) audit.CheckpointVerifier
		kind     audit.ProblemKind // empty: no problem
		unverif  int
	}{
		{"forged signature", func(t *testing.T, s *sqlstore.Store, other *testKey) {
			forger := newTestKey(t, "k1") // same kid, different key
			jws, err := forger.signer.Sign([]byte(`{"seq":10,"head":"` + hexHead(t, s, 10) + `","time":"2026-11-23T12:00:10Z","origin":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			exec(t, s.DB(), `UPDATE audit_checkpoints SET jws = $1 WHERE seq = 10`, jws)
		}, func(k, _ *testKey) audit.CheckpointVerifier { return k.verifier() }, audit.ProblemCheckpoint, 0},
		{"unknown key", func(t *testing.T, s *sqlstore.Store, other *testKey) {}, func(_, other *testKey) audit.CheckpointVerifier {
			return other.verifier()
		}, "", 4},
		{"stored head changed", func(t *testing.T, s *sqlstore.Store, other *testKey) {
			exec(t, s.DB(), `UPDATE audit_checkpoints SET head_hash = zeroblob(32) WHERE seq = 20`)
		}, func(k, _ *testKey) audit.CheckpointVerifier { return k.verifier() }, audit.ProblemCheckpoint, 0},
		{"no verifier", func(t *testing.T, s *sqlstore.Store, other *testKey) {}, func(_, _ *testKey) audit.CheckpointVerifier { return nil }, "", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			key, other := newTestKey(t, "k1"), newTestKey(t, "k2")
			fill(t, s, 35, key)
			tc.tamper(t, s, other)
			rep, err := audit.Verify(context.Background(), s, tc.verifier(key, other))
			if err != nil {
				t.Fatal(err)
			}
			first, bad := rep.FirstBad()
			if tc.kind == "" && bad {
				t.Errorf("Verify = %v, want no problem", rep.Problems)
			}
			if tc.kind != "" && (!bad || first.Kind != tc.kind) {
				t.Errorf("Verify first problem = %v, want %s", first, tc.kind)
			}
			if rep.Unverified != tc.unverif {
				t.Errorf("Unverified = %d, want %d", rep.Unverified, tc.unverif)
			}
		})
	}
}

func hexHead(t *testing.T, s *sqlstore.Store, seq int64) string {
	e := entry(t, s, seq)
	const hexdigits = "0123456789abcdef"
	b := make([]byte, 0, 64)
	for _, c := range e.Hash {
		b = append(b, hexdigits[c>>4], hexdigits[c&15])
	}
	return string(b)
}

func TestEntryHashCoversEveryField(t *testing.T) {
	base := sqlstore.AuditEntry{Seq: 1, ID: "a", Action: "read", Outcome: "success", ClientID: "c", Subject: "s", FHIRUser: "f",
		SourceIP: "i", RequestID: "r", Patients: []string{"p"}, PrevHash: audit.GenesisHash, Event: []byte(`{}`)}
	h := string(audit.EntryHash(base))
	mut := []func(e *sqlstore.AuditEntry){
		func(e *sqlstore.AuditEntry) { e.Seq = 2 },
		func(e *sqlstore.AuditEntry) { e.ID = "b" },
		func(e *sqlstore.AuditEntry) { e.Recorded = e.Recorded.Add(1000) },
		func(e *sqlstore.AuditEntry) { e.Action = "vread" },
		func(e *sqlstore.AuditEntry) { e.Outcome = "denied" },
		func(e *sqlstore.AuditEntry) { e.ClientID = "" },
		func(e *sqlstore.AuditEntry) { e.Subject = "t" },
		func(e *sqlstore.AuditEntry) { e.FHIRUser = "g" },
		func(e *sqlstore.AuditEntry) { e.SourceIP = "j" },
		func(e *sqlstore.AuditEntry) { e.RequestID = "q" },
		func(e *sqlstore.AuditEntry) { e.Patients = []string{"p", "q"} },
		func(e *sqlstore.AuditEntry) { e.Patients = []string{"pq"} },
		func(e *sqlstore.AuditEntry) { e.PrevHash = make([]byte, 32); e.PrevHash[0] = 1 },
		func(e *sqlstore.AuditEntry) { e.Event = []byte(`{ }`) },
		// moving bytes between adjacent fields must change the hash too
		func(e *sqlstore.AuditEntry) { e.ClientID, e.Subject = "cs", "" },
	}
	for i, m := range mut {
		e := base
		m(&e)
		if string(audit.EntryHash(e)) == h {
			t.Errorf("mutation %d does not change EntryHash", i)
		}
	}
}
