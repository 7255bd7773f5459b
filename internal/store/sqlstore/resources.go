package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

var (
	_ backend.Backend = (*Store)(nil)
	_ backend.Backend = (*txBackend)(nil)
)

// resourceColumns is the column list scanResource reads, from resources aliased r.
const resourceColumns = "r.type, r.id, r.version, r.last_updated, r.deleted, r.body"

// scanResource reads one row of resourceColumns.
func scanResource(row interface{ Scan(...any) error }) (*fhir.Resource, error) {
	var (
		res     fhir.Resource
		micros  int64
		deleted int
		body    []byte
	)
	if err := row.Scan(&res.Type, &res.ID, &res.VersionID, &micros, &deleted, &body); err != nil {
		return nil, err
	}
	res.LastUpdated = time.UnixMicro(micros).UTC()
	res.Deleted = deleted != 0
	res.Body = body
	return &res, nil
}

// Read implements backend.Backend.
func (s *Store) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return s.readIn(ctx, s.read, typ, id)
}

func (s *Store) readIn(ctx context.Context, q queryer, typ, id string) (*fhir.Resource, error) {
	res, err := scanResource(q.QueryRowContext(ctx,
		`SELECT `+resourceColumns+` FROM resources r WHERE r.type = $1 AND r.id = $2`, typ, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s/%s: %w", typ, id, fhir.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read %s/%s: %w", typ, id, err)
	}
	if res.Deleted {
		return res, fmt.Errorf("%s/%s: %w", typ, id, fhir.ErrGone)
	}
	return res, nil
}

// VRead implements backend.Backend.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	return s.vreadIn(ctx, s.read, typ, id, version)
}

func (s *Store) vreadIn(ctx context.Context, q queryer, typ, id string, version int64) (*fhir.Resource, error) {
	res, err := scanResource(q.QueryRowContext(ctx,
		`SELECT `+resourceColumns+` FROM resource_history r
		 WHERE r.pk = (SELECT pk FROM resources WHERE type = $1 AND id = $2) AND r.version = $3`, typ, id, version))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, fhir.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: vread %s/%s/_history/%d: %w", typ, id, version, err)
	}
	if res.Deleted {
		return res, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, fhir.ErrGone)
	}
	return res, nil
}

// Create implements backend.Backend.
func (s *Store) Create(ctx context.Context, typ string, body []byte, opts backend.CreateOptions) (res *fhir.Resource, created bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, created, err = s.createIn(ctx, tx, typ, body, opts)
		return err
	})
	return res, created, err
}

func (s *Store) createIn(ctx context.Context, tx *sql.Tx, typ string, body []byte, opts backend.CreateOptions) (*fhir.Resource, bool, error) {
	if opts.IfNoneExist != nil {
		if err := s.lockConditionalCreate(ctx, tx, typ, opts.IfNoneExist); err != nil {
			return nil, false, err
		}
		pks, err := s.matchIDs(ctx, tx, opts.IfNoneExist, 2)
		if err != nil {
			return nil, false, err
		}
		switch len(pks) {
		case 0:
		case 1:
			res, err := s.readPK(ctx, tx, pks[0])
			return res, false, err
		default:
			return nil, false, fmt.Errorf("If-None-Exist: %w", fhir.ErrMultipleMatches)
		}
	}
	id := opts.ID
	if id == "" {
		id = newID()
	}
	cur, err := s.currentIn(ctx, tx, typ, id)
	if err != nil {
		return nil, false, err
	}
	if cur != nil && !cur.deleted {
		return nil, false, fmt.Errorf("%s/%s already exists: %w", typ, id, fhir.ErrConflict)
	}
	res, err := s.writeVersion(ctx, tx, typ, id, cur, body, "POST")
	return res, true, err
}

// Update implements backend.Backend.
func (s *Store) Update(ctx context.Context, typ, id string, body []byte, opts backend.UpdateOptions) (res *fhir.Resource, created bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, created, err = s.updateIn(ctx, tx, typ, id, body, opts)
		return err
	})
	return res, created, err
}

func (s *Store) updateIn(ctx context.Context, tx *sql.Tx, typ, id string, body []byte, opts backend.UpdateOptions) (*fhir.Resource, bool, error) {
	cur, err := s.currentIn(ctx, tx, typ, id)
	if err != nil {
		return nil, false, err
	}
	if opts.IfMatch != 0 && (cur == nil || cur.deleted || cur.version != opts.IfMatch) {
		return nil, false, fmt.Errorf("%s/%s If-Match %d: %w", typ, id, opts.IfMatch, fhir.ErrVersionConflict)
	}
	created := cur == nil || cur.deleted
	res, err := s.writeVersion(ctx, tx, typ, id, cur, body, "PUT")
	return res, created, err
}

// Delete implements backend.Backend.
func (s *Store) Delete(ctx context.Context, typ, id string) (res *fhir.Resource, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		res, err = s.deleteIn(ctx, tx, typ, id)
		return err
	})
	return res, err
}

func (s *Store) deleteIn(ctx context.Context, tx *sql.Tx, typ, id string) (*fhir.Resource, error) {
	cur, err := s.currentIn(ctx, tx, typ, id)
	if err != nil || cur == nil || cur.deleted {
		return nil, err
	}
	return s.writeVersion(ctx, tx, typ, id, cur, nil, "DELETE")
}

// current is the head row of a resource.
type current struct {
	pk      int64
	version int64
	deleted bool
}

func (s *Store) currentIn(ctx context.Context, tx *sql.Tx, typ, id string) (*current, error) {
	var c current
	var deleted int
	err := tx.QueryRowContext(ctx, `SELECT pk, version, deleted FROM resources WHERE type = $1 AND id = $2`, typ, id).
		Scan(&c.pk, &c.version, &deleted)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %s/%s: %w", typ, id, err)
	}
	c.deleted = deleted != 0
	return &c, nil
}

// writeVersion stores the version after cur (nil: none yet) of typ/id: body (nil for DELETE)
// stamped with id, version and lastUpdated, the head row, the history row and the search index.
func (s *Store) writeVersion(ctx context.Context, tx *sql.Tx, typ, id string, cur *current, body []byte, method string) (*fhir.Resource, error) {
	var err error
	version := int64(1)
	if cur != nil {
		version = cur.version + 1
	}
	// lastUpdated is kept at millisecond precision, so the body and the column agree.
	now := s.now().UTC().Truncate(time.Millisecond)
	deleted := 0
	var stamped []byte
	if method == "DELETE" {
		deleted = 1
	} else {
		if stamped, err = fhir.Stamp(body, id, version, now); err != nil {
			return nil, err
		}
	}
	var pk int64
	if cur == nil {
		err = tx.QueryRowContext(ctx,
			`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ($1, $2, $3, $4, $5, $6) RETURNING pk`,
			typ, id, version, now.UnixMicro(), deleted, stamped).Scan(&pk)
	} else {
		pk = cur.pk
		_, err = tx.ExecContext(ctx,
			`UPDATE resources SET version = $1, last_updated = $2, deleted = $3, body = $4 WHERE pk = $5`,
			version, now.UnixMicro(), deleted, stamped, pk)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: write %s/%s: %w", typ, id, err)
	}
	if _, err = tx.ExecContext(ctx,
		`INSERT INTO resource_history (pk, type, id, version, last_updated, method, deleted, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		pk, typ, id, version, now.UnixMicro(), method, deleted, stamped); err != nil {
		return nil, fmt.Errorf("sqlstore: history %s/%s: %w", typ, id, err)
	}
	if method == "DELETE" {
		err = s.deleteIndex(ctx, tx, pk)
	} else {
		err = s.writeIndex(ctx, tx, pk, typ, stamped)
	}
	if err != nil {
		return nil, err
	}
	return &fhir.Resource{Type: typ, ID: id, VersionID: version, LastUpdated: now, Deleted: deleted != 0, Body: stamped}, nil
}

func (s *Store) readPK(ctx context.Context, q queryer, pk int64) (*fhir.Resource, error) {
	res, err := scanResource(q.QueryRowContext(ctx, `SELECT `+resourceColumns+` FROM resources r WHERE r.pk = $1`, pk))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read pk %d: %w", pk, err)
	}
	return res, nil
}

// History implements backend.Backend.
func (s *Store) History(ctx context.Context, hq backend.HistoryQuery) (*backend.HistoryPage, error) {
	return s.historyIn(ctx, s.read, hq)
}

func (s *Store) historyIn(ctx context.Context, q queryer, hq backend.HistoryQuery) (*backend.HistoryPage, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch {
	case hq.Type != "" && hq.ID != "":
		where = append(where, "r.pk = (SELECT pk FROM resources WHERE type = "+arg(hq.Type)+" AND id = "+arg(hq.ID)+")")
	case hq.Type != "":
		where = append(where, "r.type = "+arg(hq.Type))
	}
	if !hq.Since.IsZero() {
		where = append(where, "r.last_updated >= "+arg(hq.Since.UnixMicro()))
	}
	filter := ""
	for i, w := range where {
		if i == 0 {
			filter = " WHERE " + w
		} else {
			filter += " AND " + w
		}
	}
	page := &backend.HistoryPage{}
	if hq.Type != "" && hq.ID != "" && hq.Cursor == "" {
		var n int
		if err := q.QueryRowContext(ctx, "SELECT count(*) FROM resource_history r"+filter, args...).Scan(&n); err != nil {
			return nil, fmt.Errorf("sqlstore: history count: %w", err)
		}
		page.Total = &n
	}
	cond := filter
	if hq.Cursor != "" {
		after, err := strconv.ParseInt(hq.Cursor, 10, 64)
		if err != nil || after <= 0 {
			return nil, fhir.Invalid("", "the history page cursor is not valid")
		}
		c := "r.seq < " + arg(after)
		if cond == "" {
			cond = " WHERE " + c
		} else {
			cond += " AND " + c
		}
	}
	count := hq.Count
	if count <= 0 {
		count = 50
	}
	rows, err := q.QueryContext(ctx,
		"SELECT r.seq, r.method, "+resourceColumns+" FROM resource_history r"+cond+" ORDER BY r.seq DESC LIMIT "+arg(count+1), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: history: %w", err)
	}
	defer rows.Close()
	var lastSeq int64
	for rows.Next() {
		var (
			seq    int64
			method string
		)
		res, err := scanResource(scanPrefix{rows, []any{&seq, &method}})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: history: %w", err)
		}
		if len(page.Entries) == count {
			page.Next = strconv.FormatInt(lastSeq, 10)
			break
		}
		lastSeq = seq
		page.Entries = append(page.Entries, &backend.HistoryEntry{Resource: res, Method: method})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: history: %w", err)
	}
	return page, nil
}

// scanPrefix scans leading columns into prefix before handing the rest to scanResource.
type scanPrefix struct {
	rows   *sql.Rows
	prefix []any
}

func (p scanPrefix) Scan(dest ...any) error { return p.rows.Scan(append(p.prefix, dest...)...) }

// Search implements backend.Backend.
func (s *Store) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	return s.search(ctx, s.read, q)
}

// InTx implements backend.Backend.
func (s *Store) InTx(ctx context.Context, fn func(tx backend.Backend) error) error {
	return s.inTxOnce(ctx, func(tx *sql.Tx) error { return fn(&txBackend{s: s, tx: tx}) })
}

// txBackend is the Backend view of one open transaction: its reads see its own writes.
type txBackend struct {
	s  *Store
	tx *sql.Tx
}

func (t *txBackend) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return t.s.readIn(ctx, t.tx, typ, id)
}

func (t *txBackend) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	return t.s.vreadIn(ctx, t.tx, typ, id, version)
}

func (t *txBackend) Create(ctx context.Context, typ string, body []byte, opts backend.CreateOptions) (*fhir.Resource, bool, error) {
	return t.s.createIn(ctx, t.tx, typ, body, opts)
}

func (t *txBackend) Update(ctx context.Context, typ, id string, body []byte, opts backend.UpdateOptions) (*fhir.Resource, bool, error) {
	return t.s.updateIn(ctx, t.tx, typ, id, body, opts)
}

func (t *txBackend) Delete(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	return t.s.deleteIn(ctx, t.tx, typ, id)
}

func (t *txBackend) History(ctx context.Context, hq backend.HistoryQuery) (*backend.HistoryPage, error) {
	return t.s.historyIn(ctx, t.tx, hq)
}

func (t *txBackend) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	return t.s.search(ctx, t.tx, q)
}

// InTx nests: the work joins the open transaction, in a savepoint, so that a nested fn that
// fails is rolled back alone (as InTx promises) while the enclosing work goes on.
func (t *txBackend) InTx(ctx context.Context, fn func(tx backend.Backend) error) error {
	return runInSavepoint(ctx, t.tx, func(*sql.Tx) error { return fn(t) })
}

// newID returns a random resource id: 32 hex digits (128 bits), a valid FHIR id.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 32)
	for i, c := range b {
		out[2*i] = hexdigits[c>>4]
		out[2*i+1] = hexdigits[c&0xf]
	}
	return string(out)
}
