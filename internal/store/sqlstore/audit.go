package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// AuditEntry is one row of the audit hash chain. internal/audit builds it, computes the hashes and
// owns the meaning of every field; the store only keeps and indexes it.
type AuditEntry struct {
	Seq       int64
	ID        string
	Recorded  time.Time // microsecond precision, UTC
	Action    string
	Outcome   string
	ClientID  string
	Subject   string
	FHIRUser  string
	SourceIP  string
	RequestID string
	Patients  []string // Patient ids
	PrevHash  []byte
	Hash      []byte
	Event     []byte // AuditEvent JSON
}

// AuditHead is the last entry of the chain: sequence 0 and an empty hash when the chain is empty.
type AuditHead struct {
	Seq  int64
	Hash []byte
}

// AuditCheckpoint is a signed statement of the chain head at some time.
type AuditCheckpoint struct {
	Seq      int64
	HeadHash []byte
	Created  time.Time
	JWS      string
}

// AuditFilter selects entries for ListAuditEntries. Zero fields do not filter.
type AuditFilter struct {
	// Since and Until bound Recorded: Since <= recorded < Until.
	Since, Until time.Time
	// Patient is a Patient id the entry concerns.
	Patient string
	// Agent matches the client id, the subject or the fhirUser of the entry.
	Agent string
	// Outcome and Action match exactly.
	Outcome string
	Action  string
	// Ascending lists oldest first; the default is newest first.
	Ascending bool
	// Cursor continues a listing: the Seq of the last entry of the previous page (exclusive).
	// Pages are in seq order, except with a time range and no patient or agent, where they are
	// in (recorded, seq) order; the cursor is a Seq either way.
	Cursor int64
	// Limit bounds the page; 100 when zero, at most 1000.
	Limit int
}

// ErrAuditHeadMoved is returned by AppendAudit when build returns entries that do not follow the
// head it was given.
var ErrAuditHeadMoved = errors.New("sqlstore: audit entries do not follow the chain head")

const auditColumns = `seq, id, recorded_us, action, outcome, client_id, subject, fhir_user, source_ip, request_id, patients, prev_hash, hash, event`

// AuditHead returns the last entry's sequence and hash.
func (s *Store) AuditHead(ctx context.Context) (AuditHead, error) {
	return auditHead(ctx, s.read)
}

func auditHead(ctx context.Context, q queryer) (AuditHead, error) {
	var h AuditHead
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return AuditHead{}, nil
	}
	if err != nil {
		return AuditHead{}, fmt.Errorf("sqlstore: audit head: %w", err)
	}
	return h, nil
}

// AppendAudit appends entries in one transaction. build is called inside the transaction with the
// current head (read under the write lock, so concurrent appenders, even in other processes,
// cannot fork the chain) and returns the entries to append, which must continue from it. The
// entries are returned as committed.
func (s *Store) AppendAudit(ctx context.Context, build func(head AuditHead) ([]AuditEntry, error)) ([]AuditEntry, error) {
	var out []AuditEntry
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		head, err := auditHead(ctx, tx)
		if err != nil {
			return err
		}
		entries, err := build(head)
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		if entries[0].Seq != head.Seq+1 {
			return ErrAuditHeadMoved
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO audit_log (`+auditColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`)
		if err != nil {
			return fmt.Errorf("sqlstore: append audit: %w", err)
		}
		defer ins.Close()
		var insP, insA *sql.Stmt
		for _, e := range entries {
			patients, err := json.Marshal(auditNonNil(e.Patients))
			if err != nil {
				return err
			}
			if _, err := ins.ExecContext(ctx, e.Seq, e.ID, e.Recorded.UnixMicro(), e.Action, e.Outcome, e.ClientID, e.Subject,
				e.FHIRUser, e.SourceIP, e.RequestID, string(patients), e.PrevHash, e.Hash, string(e.Event)); err != nil {
				return fmt.Errorf("sqlstore: append audit %d: %w", e.Seq, err)
			}
			for _, p := range auditUnique(e.Patients) {
				if insP == nil {
					if insP, err = tx.PrepareContext(ctx, `INSERT INTO audit_patients (patient, seq) VALUES ($1, $2)`); err != nil {
						return fmt.Errorf("sqlstore: append audit: %w", err)
					}
					defer insP.Close()
				}
				if _, err := insP.ExecContext(ctx, p, e.Seq); err != nil {
					return fmt.Errorf("sqlstore: append audit %d patient: %w", e.Seq, err)
				}
			}
			for _, a := range AuditAgents(e) {
				if insA == nil {
					if insA, err = tx.PrepareContext(ctx, `INSERT INTO audit_agents (agent, seq) VALUES ($1, $2)`); err != nil {
						return fmt.Errorf("sqlstore: append audit: %w", err)
					}
					defer insA.Close()
				}
				if _, err := insA.ExecContext(ctx, a, e.Seq); err != nil {
					return fmt.Errorf("sqlstore: append audit %d agent: %w", e.Seq, err)
				}
			}
		}
		out = entries
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutAuditCheckpoint stores a checkpoint; a second checkpoint at the same sequence is ignored.
func (s *Store) PutAuditCheckpoint(ctx context.Context, c AuditCheckpoint) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO audit_checkpoints (seq, head_hash, created_us, jws) VALUES ($1, $2, $3, $4)
		ON CONFLICT (seq) DO NOTHING`, c.Seq, c.HeadHash, c.Created.UnixMicro(), c.JWS)
	if err != nil {
		return fmt.Errorf("sqlstore: put audit checkpoint: %w", err)
	}
	return nil
}

// ListAuditCheckpoints returns every checkpoint in sequence order.
func (s *Store) ListAuditCheckpoints(ctx context.Context) ([]AuditCheckpoint, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT seq, head_hash, created_us, jws FROM audit_checkpoints ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list audit checkpoints: %w", err)
	}
	defer rows.Close()
	var out []AuditCheckpoint
	for rows.Next() {
		var c AuditCheckpoint
		var us int64
		if err := rows.Scan(&c.Seq, &c.HeadHash, &us, &c.JWS); err != nil {
			return nil, fmt.Errorf("sqlstore: list audit checkpoints: %w", err)
		}
		c.Created = time.UnixMicro(us).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// LatestAuditCheckpoint returns the checkpoint with the highest sequence, or a zero checkpoint.
func (s *Store) LatestAuditCheckpoint(ctx context.Context) (AuditCheckpoint, error) {
	var c AuditCheckpoint
	var us int64
	err := s.read.QueryRowContext(ctx, `SELECT seq, head_hash, created_us, jws FROM audit_checkpoints ORDER BY seq DESC LIMIT 1`).Scan(&c.Seq, &c.HeadHash, &us, &c.JWS)
	if errors.Is(err, sql.ErrNoRows) {
		return AuditCheckpoint{}, nil
	}
	if err != nil {
		return AuditCheckpoint{}, fmt.Errorf("sqlstore: latest audit checkpoint: %w", err)
	}
	c.Created = time.UnixMicro(us).UTC()
	return c, nil
}

// ScanAudit calls fn for every entry with Seq > after, in the physical order of the sequence
// column, streaming. It reads the rows as stored, without any check.
func (s *Store) ScanAudit(ctx context.Context, after int64, fn func(AuditEntry) error) error {
	rows, err := s.read.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_log WHERE seq > $1 ORDER BY seq`, after)
	if err != nil {
		return fmt.Errorf("sqlstore: scan audit: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanAuditEntry(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditAgents returns the agent index values of an entry: its distinct non-empty client id,
// subject and fhirUser, sorted.
func AuditAgents(e AuditEntry) []string {
	var out []string
	for _, v := range []string{e.ClientID, e.Subject, e.FHIRUser} {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// ScanAuditPatients calls fn for every row of the patient index, ordered by seq then patient.
func (s *Store) ScanAuditPatients(ctx context.Context, fn func(seq int64, patient string) error) error {
	return s.scanAuditIndex(ctx, "audit_patients", "patient", fn)
}

// ScanAuditAgents calls fn for every row of the agent index, ordered by seq then agent.
func (s *Store) ScanAuditAgents(ctx context.Context, fn func(seq int64, agent string) error) error {
	return s.scanAuditIndex(ctx, "audit_agents", "agent", fn)
}

func (s *Store) scanAuditIndex(ctx context.Context, table, col string, fn func(int64, string) error) error {
	rows, err := s.read.QueryContext(ctx, `SELECT seq, `+col+` FROM `+table+` ORDER BY seq, `+col)
	if err != nil {
		return fmt.Errorf("sqlstore: scan %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var p string
		if err := rows.Scan(&seq, &p); err != nil {
			return fmt.Errorf("sqlstore: scan %s: %w", table, err)
		}
		if err := fn(seq, p); err != nil {
			return err
		}
	}
	return rows.Err()
}

// GetAuditEntry returns the entry with AuditEvent id, or fhir-style not found as sql.ErrNoRows
// wrapped.
func (s *Store) GetAuditEntry(ctx context.Context, id string) (AuditEntry, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_log WHERE id = $1`, id)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("sqlstore: get audit entry: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return AuditEntry{}, fmt.Errorf("sqlstore: get audit entry: %w", err)
		}
		return AuditEntry{}, fmt.Errorf("sqlstore: audit entry %q: %w", id, sql.ErrNoRows)
	}
	return scanAuditEntry(rows)
}

// ListAuditEntries returns one page of entries matching f, keyset-paged on seq: pass the Seq of
// the last entry returned as the next Cursor.
func (s *Store) ListAuditEntries(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	// Walk the most selective index in seq order: the patient index, else the agent index, else
	// the log itself; the order column is that table's seq so that no sort is needed.
	from, seqCol := "audit_log l", "l.seq"
	if f.Patient != "" {
		from, seqCol = "audit_patients p JOIN audit_log l ON l.seq = p.seq", "p.seq"
		where = append(where, "p.patient = "+arg(f.Patient))
	}
	if f.Agent != "" {
		if f.Patient == "" {
			from, seqCol = "audit_agents a JOIN audit_log l ON l.seq = a.seq", "a.seq"
		} else {
			from += " JOIN audit_agents a ON a.seq = l.seq"
		}
		where = append(where, "a.agent = "+arg(f.Agent))
	}
	if !f.Since.IsZero() {
		where = append(where, "l.recorded_us >= "+arg(f.Since.UnixMicro()))
	}
	if !f.Until.IsZero() {
		where = append(where, "l.recorded_us < "+arg(f.Until.UnixMicro()))
	}
	if f.Outcome != "" {
		where = append(where, "l.outcome = "+arg(f.Outcome))
		if f.Outcome != "success" {
			// Lets SQLite use the partial index audit_log_outcome (a bound parameter alone
			// does not prove the index's WHERE).
			where = append(where, "l.outcome <> 'success'")
		}
	}
	if f.Action != "" {
		where = append(where, "l.action = "+arg(f.Action))
	}
	order, cmp := "DESC", " < "
	if f.Ascending {
		order, cmp = "ASC", " > "
	}
	orderBy := seqCol + " " + order
	if seqCol == "l.seq" && (!f.Since.IsZero() || !f.Until.IsZero()) {
		// A time range alone walks audit_log_recorded (recorded_us, seq) instead of sorting
		// the range; the cursor is still an entry's seq.
		orderBy = "l.recorded_us " + order + ", l.seq " + order
		if f.Cursor > 0 {
			where = append(where, "(l.recorded_us, l.seq)"+cmp+"(SELECT recorded_us, seq FROM audit_log WHERE seq = "+arg(f.Cursor)+")")
		}
	} else if f.Cursor > 0 {
		where = append(where, seqCol+cmp+arg(f.Cursor))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	q := "SELECT " + auditPrefixed("l.", auditColumns) + " FROM " + from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + orderBy + " LIMIT " + arg(limit)
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		e, err := scanAuditEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func scanAuditEntry(rows *sql.Rows) (AuditEntry, error) {
	var e AuditEntry
	var us int64
	var patients, event string
	if err := rows.Scan(&e.Seq, &e.ID, &us, &e.Action, &e.Outcome, &e.ClientID, &e.Subject, &e.FHIRUser, &e.SourceIP,
		&e.RequestID, &patients, &e.PrevHash, &e.Hash, &event); err != nil {
		return AuditEntry{}, fmt.Errorf("sqlstore: audit row: %w", err)
	}
	e.Recorded = time.UnixMicro(us).UTC()
	e.Event = []byte(event)
	if err := json.Unmarshal([]byte(patients), &e.Patients); err != nil {
		// Keep the row readable: verification reports the damage through the hash.
		e.Patients = []string{"\x00invalid:" + patients}
	}
	if len(e.Patients) == 0 {
		e.Patients = nil
	}
	return e, nil
}

func auditPrefixed(p, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = p + parts[i]
	}
	return strings.Join(parts, ", ")
}

func auditNonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func auditUnique(s []string) []string {
	if len(s) < 2 {
		return s
	}
	seen := make(map[string]bool, len(s))
	out := make([]string, 0, len(s))
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
