package sqlstore

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Search limits of the store, whatever the query asks.
const (
	// defaultPageSize is the page size of a query without Count.
	defaultPageSize = 50
	// maxPageSize caps Count.
	maxPageSize = 1000
	// maxIncluded caps the resources _include and _revinclude add to one page.
	maxIncluded = 1000
	// maxIterate caps the rounds of :iterate includes.
	maxIterate = 4
)

// search runs query and returns one page: matches in _sort order (then by pk), keyset-paged by a
// cursor that holds the last row's sort values and pk.
//
// Total: counted when _total=accurate or _summary=count; otherwise given only when it is free
// (a first page that holds every match); never with _total=none.
func (s *Store) search(ctx context.Context, q queryer, query *search.Query) (*search.Result, error) {
	if len(query.Types) == 0 {
		return nil, fhir.Invalid("", "the search names no resource type")
	}
	res := &search.Result{}
	if query.Summary == search.SummaryCount || query.Total == search.TotalAccurate {
		n, err := s.count(ctx, q, query)
		if err != nil {
			return nil, err
		}
		res.Total = &n
		if query.Summary == search.SummaryCount {
			return res, nil
		}
	}
	size := query.Count
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)

	stmt, args, nkeys, err := pageSQL(query, size)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: search: %w", err)
	}
	defer rows.Close()
	var (
		pks  []int64
		last cursor
	)
	for rows.Next() {
		var pk int64
		vals := make([]any, nkeys)
		dest := []any{&pk}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		r, err := scanResource(scanSuffix{rows, dest})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: search: %w", err)
		}
		if len(res.Matches) == size {
			res.Next = last.encode()
			break
		}
		res.Matches = append(res.Matches, r)
		pks = append(pks, pk)
		last = cursor{PK: pk, Values: vals}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: search: %w", err)
	}
	rows.Close()
	if res.Total == nil && query.Total != search.TotalNone && query.Cursor == "" && res.Next == "" {
		n := len(res.Matches)
		res.Total = &n
	}
	if len(pks) > 0 && (len(query.Includes) > 0 || len(query.RevIncludes) > 0) {
		if res.Included, err = s.includes(ctx, q, query, res.Matches, pks); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// pageSQL is the statement of one page of query: size+1 rows (the extra one tells whether there
// is a next page) of resourceColumns, pk and the sort values, after the cursor.
func pageSQL(query *search.Query, size int) (string, []any, int, error) {
	b := &sqlBuilder{}
	where, err := b.filter(query, "r")
	if err != nil {
		return "", nil, 0, err
	}
	keys := make([]string, len(query.Sort))
	for i, k := range query.Sort {
		if keys[i], err = b.sortExpr(k, "r"); err != nil {
			return "", nil, 0, err
		}
	}
	// The inner select computes the sort values once per candidate; the outer one pages on them.
	inner := "SELECT r.pk AS pk"
	for i, k := range keys {
		inner += ", " + k + " AS s" + strconv.Itoa(i)
	}
	inner += " FROM resources r WHERE " + where
	cond := ""
	if query.Cursor != "" {
		c, err := decodeCursor(query.Cursor, len(keys))
		if err != nil {
			return "", nil, 0, err
		}
		cond = " WHERE " + b.keyset(query.Sort, c)
	}
	var order []string
	for i, k := range query.Sort {
		dir := " ASC"
		if k.Desc {
			dir = " DESC"
		}
		order = append(order, "m.s"+strconv.Itoa(i)+dir)
	}
	order = append(order, "m.pk ASC")
	sel := "SELECT " + resourceColumns + ", m.pk"
	for i := range keys {
		sel += ", m.s" + strconv.Itoa(i)
	}
	stmt := sel + " FROM (" + inner + ") m JOIN resources r ON r.pk = m.pk" + cond +
		" ORDER BY " + strings.Join(order, ", ") + " LIMIT " + strconv.Itoa(size+1)
	return stmt, b.args, len(keys), nil
}

// count is the number of matches of query.
func (s *Store) count(ctx context.Context, q queryer, query *search.Query) (int, error) {
	b := &sqlBuilder{}
	where, err := b.filter(query, "r")
	if err != nil {
		return 0, err
	}
	var n int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM resources r WHERE "+where, b.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: search count: %w", err)
	}
	return n, nil
}

// matchIDs returns the pks of at most limit resources that match query, for conditional
// create, update and delete. Sort, paging and includes are ignored.
func (s *Store) matchIDs(ctx context.Context, q queryer, query *search.Query, limit int) ([]int64, error) {
	if len(query.Types) == 0 {
		return nil, fhir.Invalid("", "the search names no resource type")
	}
	b := &sqlBuilder{}
	where, err := b.filter(query, "r")
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, "SELECT r.pk FROM resources r WHERE "+where+" ORDER BY r.pk LIMIT "+strconv.Itoa(max(limit, 1)), b.args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: match: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var pk int64
		if err := rows.Scan(&pk); err != nil {
			return nil, fmt.Errorf("sqlstore: match: %w", err)
		}
		out = append(out, pk)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: match: %w", err)
	}
	return out, nil
}

// scanSuffix scans the resource columns and then the extra columns into suffix.
type scanSuffix struct {
	rows interface{ Scan(...any) error }
	// suffix are the destinations of the columns after resourceColumns.
	suffix []any
}

func (p scanSuffix) Scan(dest ...any) error { return p.rows.Scan(append(dest, p.suffix...)...) }

// cursor is the position after the last row of a page: its sort values and pk.
type cursor struct {
	PK     int64
	Values []any
}

// encode writes the cursor as base64url JSON; each sort value is tagged with its kind, so that
// it is bound back with the same SQL type.
func (c cursor) encode() string {
	type wire struct {
		P int64    `json:"p"`
		V []string `json:"v,omitempty"`
	}
	w := wire{P: c.PK}
	for _, v := range c.Values {
		switch x := v.(type) {
		case int64:
			w.V = append(w.V, "i"+strconv.FormatInt(x, 10))
		case float64:
			w.V = append(w.V, "f"+strconv.FormatFloat(x, 'g', -1, 64))
		case []byte:
			w.V = append(w.V, "s"+string(x))
		case string:
			w.V = append(w.V, "s"+x)
		default:
			w.V = append(w.V, "s"+fmt.Sprint(x))
		}
	}
	b, _ := json.Marshal(w)
	return base64.RawURLEncoding.EncodeToString(b)
}

func badCursor() error { return fhir.Invalid("", "the search page cursor is not valid") }

// decodeCursor reads a cursor made by encode for a query with n sort keys.
func decodeCursor(s string, n int) (cursor, error) {
	var w struct {
		P int64    `json:"p"`
		V []string `json:"v"`
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(raw, &w) != nil || len(w.V) != n || w.P <= 0 {
		return cursor{}, badCursor()
	}
	c := cursor{PK: w.P}
	for _, v := range w.V {
		if v == "" {
			return cursor{}, badCursor()
		}
		switch v[0] {
		case 'i':
			x, err := strconv.ParseInt(v[1:], 10, 64)
			if err != nil {
				return cursor{}, badCursor()
			}
			c.Values = append(c.Values, x)
		case 'f':
			x, err := strconv.ParseFloat(v[1:], 64)
			if err != nil || math.IsNaN(x) {
				return cursor{}, badCursor()
			}
			c.Values = append(c.Values, x)
		case 's':
			c.Values = append(c.Values, v[1:])
		default:
			return cursor{}, badCursor()
		}
	}
	return c, nil
}

// keyset is the condition "after the cursor" in the order (s0 dir, s1 dir, ..., pk ASC):
// (s0 > v0) OR (s0 = v0 AND (s1 > v1 OR (s1 = v1 AND ... pk > p))).
func (b *sqlBuilder) keyset(keys []search.SortKey, c cursor) string {
	cond := "m.pk > " + strconv.FormatInt(c.PK, 10)
	for i := len(keys) - 1; i >= 0; i-- {
		col := "m.s" + strconv.Itoa(i)
		op := " > "
		if keys[i].Desc {
			op = " < "
		}
		v := b.arg(c.Values[i])
		cond = "(" + col + op + v + " OR (" + col + " = " + v + " AND " + cond + "))"
	}
	return cond
}

// includes resolves _include and _revinclude for a page: referenced and referring live
// resources, without duplicates and without the matches themselves. :iterate includes run again
// on what was included, up to maxIterate rounds and maxIncluded resources.
func (s *Store) includes(ctx context.Context, q queryer, query *search.Query, matches []*fhir.Resource, pks []int64) ([]*fhir.Resource, error) {
	seen := make(map[int64]bool, len(pks))
	for _, pk := range pks {
		seen[pk] = true
	}
	var out []*fhir.Resource
	frontier, frontierPKs := matches, pks
	for round := 0; round <= maxIterate && len(frontier) > 0 && len(out) < maxIncluded; round++ {
		var (
			added    []*fhir.Resource
			addedPKs []int64
		)
		run := func(inc search.Include, rev bool) error {
			if round > 0 && !inc.Iterate {
				return nil
			}
			b := &sqlBuilder{}
			var sub string
			if rev {
				sub = b.revincludeSource(inc, frontier)
			} else {
				sub = b.includeTarget(inc, frontierPKs, query.LocalBase)
			}
			if sub == "" {
				return nil
			}
			stmt := "SELECT " + resourceColumns + ", r.pk FROM resources r WHERE r.deleted = 0 AND r.pk IN (" + sub + ") ORDER BY r.pk LIMIT " + strconv.Itoa(maxIncluded+1)
			rows, err := q.QueryContext(ctx, stmt, b.args...)
			if err != nil {
				return fmt.Errorf("sqlstore: include: %w", err)
			}
			defer rows.Close()
			for rows.Next() {
				var pk int64
				r, err := scanResource(scanSuffix{rows, []any{&pk}})
				if err != nil {
					return fmt.Errorf("sqlstore: include: %w", err)
				}
				if seen[pk] || len(out)+len(added) >= maxIncluded {
					continue
				}
				seen[pk] = true
				added = append(added, r)
				addedPKs = append(addedPKs, pk)
			}
			return rows.Err()
		}
		for _, inc := range query.Includes {
			if err := run(inc, false); err != nil {
				return nil, err
			}
		}
		for _, inc := range query.RevIncludes {
			if err := run(inc, true); err != nil {
				return nil, err
			}
		}
		out = append(out, added...)
		frontier, frontierPKs = added, addedPKs
	}
	return out, nil
}

// includeTarget selects the pks of the resources that the sources (pks) refer to through inc.
func (b *sqlBuilder) includeTarget(inc search.Include, sources []int64, localBase string) string {
	conds := []string{"i.res_pk IN (" + joinInts(sources) + ")"}
	if inc.Type != "" {
		conds = append(conds, "i.res_type = "+b.arg(inc.Type))
	}
	if inc.Param != nil {
		conds = append(conds, "i.param = "+b.arg(inc.Param.Code))
	}
	if inc.Target != "" {
		conds = append(conds, "i.target_type = "+b.arg(inc.Target))
	}
	conds = append(conds, "i.target_id <> ''")
	if localBase != "" {
		// An absolute reference to another server is indexed with its Type/id too: follow it
		// only when it is on this server's base.
		conds = append(conds, "(i.url = '' OR substr(i.url, 1, "+strconv.Itoa(len(localBase))+") = "+b.arg(localBase)+")")
	}
	return "SELECT t.pk FROM idx_reference i JOIN resources t ON t.type = i.target_type AND t.id = i.target_id WHERE " + and(conds...)
}

// revincludeSource selects the pks of the resources that refer to the targets through inc.
func (b *sqlBuilder) revincludeSource(inc search.Include, targets []*fhir.Resource) string {
	byType := map[string][]string{}
	var order []string
	for _, t := range targets {
		if inc.Target != "" && t.Type != inc.Target {
			continue
		}
		if _, ok := byType[t.Type]; !ok {
			order = append(order, t.Type)
		}
		byType[t.Type] = append(byType[t.Type], t.ID)
	}
	if len(order) == 0 {
		return ""
	}
	var ors []string
	for _, typ := range order {
		ors = append(ors, "(i.target_type = "+b.arg(typ)+" AND "+b.in("i.target_id", byType[typ])+")")
	}
	conds := []string{"(" + strings.Join(ors, " OR ") + ")"}
	if inc.Type != "" {
		conds = append(conds, "i.res_type = "+b.arg(inc.Type))
	}
	if inc.Param != nil {
		conds = append(conds, "i.param = "+b.arg(inc.Param.Code))
	}
	return "SELECT i.res_pk FROM idx_reference i WHERE " + and(conds...)
}

func joinInts(xs []int64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(parts, ", ")
}
