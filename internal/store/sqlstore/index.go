package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// This file writes the search index (migration 00002): the rows of search.Extract for every
// indexed parameter, and the compartment membership of the resource. docs/search-index.md
// describes what each table holds.

// idxTable is one index table and its columns, res_pk and res_type first.
type idxTable struct {
	name string
	cols []string
}

// The index tables, in the order rows are written.
const (
	ixString = iota
	ixToken
	ixReference
	ixDate
	ixNumber
	ixQuantity
	ixURI
	ixComposite
	ixCompartment
	ixCount
)

var idxTables = [ixCount]idxTable{
	ixString:      {"idx_string", []string{"res_pk", "res_type", "param", "value", "exact"}},
	ixToken:       {"idx_token", []string{"res_pk", "res_type", "param", "system", "code", "text"}},
	ixReference:   {"idx_reference", []string{"res_pk", "res_type", "param", "target_type", "target_id", "url", "ident_system", "ident_value"}},
	ixDate:        {"idx_date", []string{"res_pk", "res_type", "param", "low", "high"}},
	ixNumber:      {"idx_number", []string{"res_pk", "res_type", "param", "value"}},
	ixQuantity:    {"idx_quantity", []string{"res_pk", "res_type", "param", "system", "code", "unit", "value"}},
	ixURI:         {"idx_uri", []string{"res_pk", "res_type", "param", "value"}},
	ixComposite:   {"idx_composite", []string{"res_pk", "res_type", "param", "system", "code", "v_system", "v_code", "v_string", "v_num", "v_low", "v_high"}},
	ixCompartment: {"idx_compartment", []string{"res_pk", "res_type", "comp_type", "comp_id"}},
}

var ixTableOf = map[search.Type]int{
	search.TypeString:    ixString,
	search.TypeToken:     ixToken,
	search.TypeReference: ixReference,
	search.TypeDate:      ixDate,
	search.TypeNumber:    ixNumber,
	search.TypeQuantity:  ixQuantity,
	search.TypeURI:       ixURI,
	search.TypeComposite: ixComposite,
}

// ixColumnParams are answered from the resources table (id, last_updated), so they get no rows.
var ixColumnParams = map[string]bool{"_id": true, "_lastUpdated": true}

// ixMaxRows bounds a multi-row INSERT: 64 rows of the widest table use 704 parameters,
// under every SQLite build's limit (999) and PostgreSQL's (65535).
const ixMaxRows = 64

// ixExistsSQL asks, in one statement, which index tables hold rows of a resource, so that a new
// resource (the common case) costs one probe instead of one DELETE per table.
var ixExistsSQL = func() string {
	parts := make([]string, ixCount)
	for i, t := range idxTables {
		parts[i] = "EXISTS (SELECT 1 FROM " + t.name + " WHERE res_pk = $1)"
	}
	return "SELECT " + strings.Join(parts, ", ")
}()

var ixDeleteSQL = func() (out [ixCount]string) {
	for i, t := range idxTables {
		out[i] = "DELETE FROM " + t.name + " WHERE res_pk = $1"
	}
	return out
}()

// ixInsertSQL caches the multi-row INSERT of n rows into table t.
var ixInsertSQL sync.Map // [2]int{t, n} -> string

func ixInsertStatement(t, n int) string {
	key := [2]int{t, n}
	if s, ok := ixInsertSQL.Load(key); ok {
		return s.(string)
	}
	tbl := idxTables[t]
	var b strings.Builder
	b.WriteString("INSERT INTO " + tbl.name + " (" + strings.Join(tbl.cols, ", ") + ") VALUES ")
	p := 1
	for r := range n {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range tbl.cols {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteByte(')')
	}
	s := b.String()
	ixInsertSQL.Store(key, s)
	return s
}

// execIndex runs q in tx, prepared once per transaction (txStatement).
func execIndex(ctx context.Context, tx *sql.Tx, q string, args ...any) error {
	ps, err := txStatement(ctx, tx, q)
	if err != nil {
		return err
	}
	_, err = ps.ExecContext(ctx, args...)
	return err
}

// txStmts caches the index statements a transaction has prepared, so that a transaction that
// writes many resources (an import chunk, a transaction Bundle) parses each statement once. The
// statements close with the transaction; the entry goes when the transaction is collected.
type txStmts struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

var txStatements sync.Map // weak.Pointer[sql.Tx] -> *txStmts

func txStatement(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	key := weak.Make(tx)
	v, ok := txStatements.Load(key)
	if !ok {
		var loaded bool
		if v, loaded = txStatements.LoadOrStore(key, &txStmts{stmts: map[string]*sql.Stmt{}}); !loaded {
			runtime.AddCleanup(tx, func(k weak.Pointer[sql.Tx]) { txStatements.Delete(k) }, key)
		}
	}
	c := v.(*txStmts)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.stmts[q] = st
	return st, nil
}

// deleteIndex removes every index row of the resource pk (every table, compartments included).
func (s *Store) deleteIndex(ctx context.Context, tx *sql.Tx, pk int64) error {
	var has [ixCount]bool
	dest := make([]any, ixCount)
	for i := range has {
		dest[i] = &has[i]
	}
	ps, err := txStatement(ctx, tx, ixExistsSQL)
	if err != nil {
		return fmt.Errorf("sqlstore: index of pk %d: %w", pk, err)
	}
	if err := ps.QueryRowContext(ctx, pk).Scan(dest...); err != nil {
		return fmt.Errorf("sqlstore: index of pk %d: %w", pk, err)
	}
	for i, h := range has {
		if !h {
			continue
		}
		if err := execIndex(ctx, tx, ixDeleteSQL[i], pk); err != nil {
			return fmt.Errorf("sqlstore: delete %s rows of pk %d: %w", idxTables[i].name, pk, err)
		}
	}
	return nil
}

// writeIndex replaces the index rows of the resource pk with those of body, a resource of
// resourceType: its search parameter values (search.Extract) and its Patient compartment
// membership. It runs inside the transaction that writes the resource.
func (s *Store) writeIndex(ctx context.Context, tx *sql.Tx, pk int64, resourceType string, body []byte) error {
	entries, err := s.registry.Extract(resourceType, body)
	if err != nil {
		if errors.Is(err, search.ErrNotIndexable) {
			return &fhir.Error{Status: http.StatusBadRequest, Code: "invalid", Diagnostics: "the resource cannot be indexed", Cause: err}
		}
		return fmt.Errorf("sqlstore: index %s: %w", resourceType, err)
	}
	if err := s.deleteIndex(ctx, tx, pk); err != nil {
		return err
	}
	var rows [ixCount][]any // flattened column values per table
	var counts [ixCount]int
	add := func(t int, vals ...any) {
		rows[t] = append(rows[t], vals...)
		counts[t]++
	}
	for i := range entries {
		e := &entries[i]
		if ixColumnParams[e.Param] {
			continue
		}
		t, ok := ixTableOf[e.Type]
		if !ok {
			continue
		}
		switch t {
		case ixString:
			add(t, pk, resourceType, e.Param, e.Value, e.Exact)
		case ixToken:
			add(t, pk, resourceType, e.Param, e.System, e.Code, e.Text)
		case ixReference:
			add(t, pk, resourceType, e.Param, e.TargetType, e.TargetID, e.URL, e.IdentSystem, e.IdentValue)
		case ixDate:
			add(t, pk, resourceType, e.Param, e.Low, e.High)
		case ixNumber:
			add(t, pk, resourceType, e.Param, e.Number)
		case ixQuantity:
			add(t, pk, resourceType, e.Param, e.System, e.Code, e.Unit, e.Number)
		case ixURI:
			add(t, pk, resourceType, e.Param, e.Value)
		case ixComposite:
			if e.Second == nil {
				continue
			}
			vs, vc, vstr, num, low, high := compositeSecond(e.Second)
			add(t, pk, resourceType, e.Param, e.System, e.Code, vs, vc, vstr, num, low, high)
		}
	}
	for _, id := range compartment.Membership(resourceType, entries) {
		add(ixCompartment, pk, resourceType, compartment.TypePatient, id)
	}
	for t := range ixCount {
		if err := insertIndexRows(ctx, tx, t, rows[t], counts[t]); err != nil {
			return fmt.Errorf("sqlstore: index %s pk %d: %w", resourceType, pk, err)
		}
	}
	return nil
}

// compositeSecond maps the second component of a composite entry to the v_* columns: token to
// v_system/v_code; quantity to v_num with its unit in v_system/v_code (the unit as written when
// it has no code); number to v_num; date to v_low/v_high; string to v_string (normalised);
// uri and reference to v_string as written (Type/id or the URL). Unused numeric columns are NULL.
func compositeSecond(s *search.Entry) (vSystem, vCode, vString string, num, low, high any) {
	switch s.Type {
	case search.TypeToken:
		vSystem, vCode = s.System, s.Code
	case search.TypeQuantity:
		vSystem, vCode, num = s.System, s.Code, s.Number
		if vCode == "" {
			vCode = s.Unit
		}
	case search.TypeNumber:
		num = s.Number
	case search.TypeDate:
		low, high = s.Low, s.High
	case search.TypeString, search.TypeURI:
		vString = s.Value
	case search.TypeReference:
		vString = s.URL
		if s.TargetID != "" {
			vString = s.TargetType + "/" + s.TargetID
		}
	}
	return
}

// insertIndexRows writes n rows (vals flattened) into table t with multi-row INSERTs of 1, 2, 4,
// ... ixMaxRows rows: few distinct statements, so that a transaction reuses the ones it prepared.
func insertIndexRows(ctx context.Context, tx *sql.Tx, t int, vals []any, n int) error {
	width := len(idxTables[t].cols)
	for n > 0 {
		k := 1 << (bits.Len(uint(min(n, ixMaxRows))) - 1)
		if err := execIndex(ctx, tx, ixInsertStatement(t, k), vals[:k*width]...); err != nil {
			return fmt.Errorf("insert into %s: %w", idxTables[t].name, err)
		}
		vals, n = vals[k*width:], n-k
	}
	return nil
}
