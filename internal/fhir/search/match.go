package search

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// This file evaluates search clauses against one resource body in memory, with the semantics the
// SQL store gives the same clauses over its index (internal/store/sqlstore/search_sql.go): the
// body's index entries (Extract) stand for its index rows, and every predicate below mirrors the
// SQL predicate of the same parameter type, modifier and prefix. The policy engine uses it to
// check every resource it lets out against granular scope constraints, so it fails closed: a
// clause it cannot evaluate exactly (chains, _has, unsupported modifiers, parameters that are
// not indexed, values that Parse cannot produce) is an error, never a match.

// ErrNotEvaluable is wrapped by the errors of Matcher.Matches for a clause that cannot be
// evaluated in memory exactly as a backend evaluates it.
var ErrNotEvaluable = errors.New("search: clause cannot be evaluated in memory")

// Matcher decides whether resource bodies satisfy search clauses (it implements
// policy.Matcher). Build it with NewMatcher; it is immutable and safe for concurrent use.
type Matcher struct {
	x *Extractor
	// indexed holds, per resource type, the parameters the Extractor indexes by code.
	indexed map[string]map[string]*Param
}

// NewMatcher builds a Matcher over the index extraction of reg (the Extractor reg.Extract
// uses). reg must be the registry the backend indexes with, so that both see the same entries.
func NewMatcher(reg *Registry) (*Matcher, error) {
	if reg == nil {
		return nil, errors.New("search: NewMatcher without a registry")
	}
	x, err := reg.extractor()
	if err != nil {
		return nil, err
	}
	m := &Matcher{x: x, indexed: make(map[string]map[string]*Param, len(x.byType))}
	for typ, cs := range x.byType {
		codes := make(map[string]*Param, len(cs))
		for _, c := range cs {
			codes[c.p.Code] = c.p
		}
		m.indexed[typ] = codes
	}
	return m, nil
}

func notEvaluable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotEvaluable, fmt.Sprintf(format, args...))
}

// Matches reports whether body, a resource of resourceType, satisfies every clause (the clauses
// are ANDed, the values of a clause ORed) as a search of resourceType with these clauses finds
// it in the SQL store. The body's index entries are extracted once.
//
// It returns false and an error for a body that cannot be indexed as a resourceType and for any
// clause it cannot evaluate exactly: chains, reverse chains (_has), modifiers Parse does not
// accept, parameter types without an index, parameters not indexed for resourceType, and values
// whose typed fields Parse cannot produce. With no clauses, any indexable body matches.
func (m *Matcher) Matches(resourceType string, body []byte, clauses []Clause) (bool, error) {
	if m == nil || m.x == nil {
		return false, errors.New("search: Matches on a Matcher not built by NewMatcher")
	}
	for i := range clauses {
		c := &clauses[i]
		if err := checkMatchClause(c); err != nil {
			return false, err
		}
		// The parameter must be the one the index holds for the type: a clause made for
		// another type (or another definition of the code) says nothing about this body.
		ip := m.indexed[resourceType][c.Param.Code]
		if ip == nil {
			return false, notEvaluable("%s has no indexed search parameter %s", truncate(resourceType), truncate(c.Param.Code))
		}
		if ip != c.Param && (ip.Type != c.Param.Type || ip.Expression != c.Param.Expression) {
			return false, notEvaluable("the clause's parameter %s is not %s's", truncate(c.Param.Code), truncate(resourceType))
		}
	}
	entries, err := m.x.Extract(resourceType, body)
	if err != nil {
		return false, err
	}
	for i := range clauses {
		ok, err := matchClause(entries, &clauses[i])
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// checkMatchClause refuses the clauses the matcher cannot evaluate exactly.
func checkMatchClause(c *Clause) error {
	switch {
	case c.Chain != nil:
		return notEvaluable("a chained clause")
	case c.Reverse != nil:
		return notEvaluable("a _has clause")
	case c.Param == nil:
		return notEvaluable("a clause without a parameter")
	case len(c.Values) == 0:
		return notEvaluable("the clause on %s has no values", truncate(c.Param.Code))
	}
	p := c.Param
	switch p.Type {
	case TypeString, TypeToken, TypeReference, TypeDate, TypeNumber, TypeQuantity, TypeURI, TypeComposite:
	default:
		return notEvaluable("the search parameter %s has type %s", truncate(p.Code), p.Type)
	}
	// :not on a reference is not an R4 search modifier (Parse refuses it) but the policy builds
	// it to keep patients' data out of a search (policy/consent.go); the stores evaluate it as
	// "no value matches", and so does matchClause.
	internalNot := c.Modifier == "not" && p.Type == TypeReference
	if !internalNot && checkModifier(p, p.Code, c.Modifier) != nil {
		return notEvaluable("the modifier :%s on %s", truncate(c.Modifier), truncate(p.Code))
	}
	for i := range c.Values {
		if err := checkMatchValue(p, c.Modifier, &c.Values[i]); err != nil {
			return err
		}
	}
	return nil
}

// matchClause mirrors sqlBuilder.clause for a clause checkMatchClause accepted: EXISTS an index
// row of the parameter that matches one of the values; NOT EXISTS for :not; EXISTS or NOT
// EXISTS any row for :missing.
func matchClause(entries []Entry, c *Clause) (bool, error) {
	p := c.Param
	switch p.Code {
	case "_id":
		return matchID(entries, c), nil
	case "_lastUpdated":
		return matchLastUpdated(entries, c), nil
	}
	param := p.Code
	if c.Modifier == "of-type" {
		param += OfTypeSuffix
	}
	// The rows are the entries the store writes to the parameter type's table under this code.
	var rows []*Entry
	for i := range entries {
		e := &entries[i]
		if e.Param != param || e.Type != p.Type || (e.Type == TypeComposite && e.Second == nil) {
			continue
		}
		rows = append(rows, e)
	}
	if c.Modifier == "missing" {
		for _, v := range c.Values {
			if v.Missing == (len(rows) == 0) {
				return true, nil
			}
		}
		return false, nil
	}
	found := false
rows:
	for _, e := range rows {
		for i := range c.Values {
			ok, err := matchRow(p, c.Modifier, &c.Values[i], e)
			if err != nil {
				return false, err
			}
			if ok {
				found = true
				break rows
			}
		}
	}
	if c.Modifier == "not" {
		// The resources without a matching value, those without any value included.
		return !found, nil
	}
	return found, nil
}

// matchID mirrors r.id IN (...): the resource's id is its one _id entry.
func matchID(entries []Entry, c *Clause) bool {
	id, n := "", 0
	for i := range entries {
		if entries[i].Param == "_id" && entries[i].Type == TypeToken {
			id, n = entries[i].Code, n+1
		}
	}
	if n != 1 {
		return false // no id (a body not stored yet): nothing to compare
	}
	for _, v := range c.Values {
		if v.Code == id {
			return true
		}
	}
	return false
}

// matchLastUpdated mirrors the date predicate on the resources.last_updated column: one instant,
// which the store also writes to meta.lastUpdated at millisecond precision, so the start of the
// range of the body's value is the column's value.
func matchLastUpdated(entries []Entry, c *Clause) bool {
	var at int64
	n := 0
	for i := range entries {
		if entries[i].Param == "_lastUpdated" && entries[i].Type == TypeDate {
			at, n = entries[i].Low, n+1
		}
	}
	if n != 1 {
		return false
	}
	for i := range c.Values {
		if matchDate(&c.Values[i], at, at) {
			return true
		}
	}
	return false
}

// checkMatchValue refuses values that Parse cannot produce for the parameter type and
// modifier: a hand-made Value (only Raw set, say) would otherwise be compared on empty typed
// fields, as the SQL store would compare it.
func checkMatchValue(p *Param, mod string, v *Value) error {
	bad := func(why string) error {
		return notEvaluable("value %q of %s: %s", truncate(v.Raw), truncate(p.Code), why)
	}
	if mod == "missing" {
		switch {
		case v.Raw == "":
		case v.Raw == "true" && v.Missing, v.Raw == "false" && !v.Missing:
		default:
			return bad("not true or false")
		}
		return nil
	}
	if v.Raw == "" {
		return bad("empty")
	}
	if p.Code == "_id" {
		if v.Code == "" || v.HasSystem {
			return bad("not a plain id")
		}
		return nil
	}
	switch p.Type {
	case TypeString:
		if mod != "exact" && v.Text != Normalize(v.Raw) {
			return bad("Text is not the normalised Raw")
		}
	case TypeToken:
		return checkMatchToken(v, mod, bad)
	case TypeReference:
		if mod == "identifier" {
			if v.Code == "" {
				return bad("no identifier value")
			}
			return nil
		}
		switch {
		case v.RefURL != "" && (v.RefID != "" || v.RefType != ""):
			return bad("both a URL and a Type/id")
		case v.RefURL == "" && !fhir.ValidID(v.RefID):
			return bad("no valid id")
		case v.RefType != "" && !fhir.IsResourceType(v.RefType):
			return bad("unknown resource type")
		case v.RefURL == "" && mod != "" && mod != "not" && v.RefType != mod:
			return bad("the type does not agree with the :Type modifier")
		}
	case TypeDate:
		if !prefixes[v.Prefix] || v.Low > v.High {
			return bad("no prefix or an empty range")
		}
	case TypeNumber, TypeQuantity:
		if !prefixes[v.Prefix] || !matchFinite(v.Number) || !matchFinite(v.NumLow) || !matchFinite(v.NumHigh) || v.NumLow > v.NumHigh {
			return bad("no prefix or an invalid number")
		}
		if p.Type == TypeQuantity && v.HasSystem != (v.System != "") {
			return bad("a unit system flag that does not agree with the system")
		}
	case TypeURI:
	case TypeComposite:
		if len(p.Components) != 2 || len(v.Components) != 2 {
			return bad("not two components")
		}
		for i := range p.Components {
			cp := p.Components[i].Param
			if cp == nil {
				return bad("an undefined component")
			}
			switch {
			case i == 0 && cp.Type == TypeToken:
			case i == 1 && (cp.Type == TypeToken || cp.Type == TypeQuantity || cp.Type == TypeNumber || cp.Type == TypeDate || cp.Type == TypeString):
			default:
				return bad("a component of type " + string(cp.Type))
			}
			if err := checkMatchValue(cp, "", &v.Components[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkMatchToken(v *Value, mod string, bad func(string) error) error {
	switch mod {
	case "text":
		if v.Text != Normalize(v.Raw) {
			return bad("Text is not the normalised Raw")
		}
	case "of-type":
		if !v.HasSystem || v.Code == "" || v.Identifier == "" {
			return bad("not system|code|value")
		}
	default:
		if v.HasSystem && v.System == "" && v.Code == "" || !v.HasSystem && (v.Code == "" || v.System != "") {
			return bad("no code or system")
		}
	}
	return nil
}

func matchFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// matchRow mirrors sqlBuilder.valuePred: one index row against one value.
func matchRow(p *Param, mod string, v *Value, e *Entry) (bool, error) {
	switch p.Type {
	case TypeString:
		switch mod {
		case "exact":
			return e.Exact == v.Raw, nil
		case "contains":
			// value LIKE '%text%' on normalised (lower case) strings.
			return strings.Contains(e.Value, v.Text), nil
		}
		return matchPrefixRange(e.Value, v.Text), nil
	case TypeToken:
		switch mod {
		case "text":
			// A word of the text starts with the value: text LIKE 't%' OR text LIKE '% t%'.
			return strings.HasPrefix(e.Text, v.Text) || strings.Contains(e.Text, " "+v.Text), nil
		case "of-type":
			return e.System == v.System && e.Code == v.Code && e.Text == v.Identifier, nil
		}
		return matchToken(v, e.System, e.Code), nil
	case TypeReference:
		if mod == "identifier" {
			return e.IdentValue == v.Code && (!v.HasSystem || e.IdentSystem == v.System), nil
		}
		if v.RefURL != "" {
			return e.URL == v.RefURL, nil
		}
		if e.TargetID != v.RefID || v.RefType != "" && e.TargetType != v.RefType {
			return false, nil
		}
		return v.LocalBase == "" || e.URL == "" || matchSQLPrefix(e.URL, v.LocalBase), nil
	case TypeDate:
		return matchDate(v, e.Low, e.High), nil
	case TypeNumber:
		return matchNumber(v, e.Number), nil
	case TypeQuantity:
		return matchNumber(v, e.Number) && matchUnit(v, e.System, e.Code, e.Unit, true), nil
	case TypeURI:
		switch mod {
		case "below":
			return matchPrefixRange(e.Value, v.Raw), nil
		case "above":
			for _, a := range matchURIAncestors(v.Raw) {
				if e.Value == a {
					return true, nil
				}
			}
			return false, nil
		}
		return e.Value == v.Raw, nil
	case TypeComposite:
		return matchComposite(p, v, e)
	}
	return false, notEvaluable("the search parameter %s has type %s", p.Code, p.Type)
}

// matchPrefixRange mirrors the SQL prefix predicate col >= p AND col < p || U+10FFFF, in
// byte order (SQLite's BINARY collation).
func matchPrefixRange(s, p string) bool {
	return s >= p && s < p+"\U0010FFFF"
}

// matchSQLPrefix mirrors substr(url, 1, len(base)) = base, where substr counts characters and
// len(base) is a byte length: the first len(base) characters of url must equal base.
func matchSQLPrefix(url, base string) bool {
	n := len(base)
	i := 0
	for k := 0; k < n && i < len(url); k++ {
		_, size := utf8.DecodeRuneInString(url[i:])
		i += size
	}
	return url[:i] == base
}

// matchToken mirrors sqlBuilder.tokenPred: code, system|code, |code and system|.
func matchToken(v *Value, system, code string) bool {
	switch {
	case !v.HasSystem:
		return code == v.Code
	case v.Code == "":
		return system == v.System
	}
	return code == v.Code && system == v.System
}

// matchUnit mirrors sqlBuilder.unitPred; hasUnit is false where the SQL passes no unit column.
func matchUnit(v *Value, system, code, unit string, hasUnit bool) bool {
	switch {
	case v.HasSystem && v.Code != "":
		return system == v.System && code == v.Code
	case v.HasSystem:
		return system == v.System
	case v.Code != "" && hasUnit:
		return code == v.Code || unit == v.Code
	case v.Code != "":
		return code == v.Code
	}
	return true
}

// matchDate mirrors sqlBuilder.datePred: a stored range [low, high] against the value's range.
func matchDate(v *Value, low, high int64) bool {
	eq := low >= v.Low && high <= v.High
	switch v.Prefix {
	case "ne":
		return !eq
	case "gt":
		return high > v.High
	case "lt":
		return low < v.Low
	case "ge":
		return high > v.High || eq
	case "le":
		return low < v.Low || eq
	case "sa":
		return low > v.High
	case "eb":
		return high < v.Low
	case "ap":
		return low <= v.High && high >= v.Low
	}
	return eq
}

// matchNumber mirrors sqlBuilder.numberPred.
func matchNumber(v *Value, n float64) bool {
	switch v.Prefix {
	case "ne":
		return !(n >= v.NumLow && n < v.NumHigh)
	case "gt", "sa":
		return n > v.Number
	case "lt", "eb":
		return n < v.Number
	case "ge":
		return n >= v.Number
	case "le":
		return n <= v.Number
	case "ap":
		return n >= v.NumLow && n <= v.NumHigh
	}
	return n >= v.NumLow && n < v.NumHigh
}

// matchComposite mirrors sqlBuilder.compositePred over the idx_composite row the store writes for
// the entry (index.go compositeSecond).
func matchComposite(p *Param, v *Value, e *Entry) (bool, error) {
	if len(v.Components) != 2 || len(p.Components) != 2 || p.Components[1].Param == nil {
		return false, notEvaluable("the composite search parameter %s", p.Code)
	}
	if !matchToken(&v.Components[0], e.System, e.Code) {
		return false, nil
	}
	row := matchCompositeRowOf(e.Second)
	sv := &v.Components[1]
	switch p.Components[1].Param.Type {
	case TypeToken:
		return matchToken(sv, row.vSystem, row.vCode), nil
	case TypeQuantity:
		return row.hasNum && matchNumber(sv, row.num) && matchUnit(sv, row.vSystem, row.vCode, "", false), nil
	case TypeNumber:
		return row.hasNum && matchNumber(sv, row.num), nil
	case TypeDate:
		return row.hasDate && matchDate(sv, row.low, row.high), nil
	case TypeString:
		return matchPrefixRange(row.vString, sv.Text), nil
	}
	return false, notEvaluable("the composite search parameter %s", p.Code)
}

// matchCompositeRow is the v_* columns of an idx_composite row; hasNum and hasDate are false where
// the column is NULL (a comparison with NULL is never true).
type matchCompositeRow struct {
	vSystem, vCode, vString string
	num                     float64
	hasNum                  bool
	low, high               int64
	hasDate                 bool
}

// matchCompositeRowOf mirrors sqlstore's compositeSecond.
func matchCompositeRowOf(s *Entry) matchCompositeRow {
	var r matchCompositeRow
	switch s.Type {
	case TypeToken:
		r.vSystem, r.vCode = s.System, s.Code
	case TypeQuantity:
		r.vSystem, r.vCode, r.num, r.hasNum = s.System, s.Code, s.Number, true
		if r.vCode == "" {
			r.vCode = s.Unit
		}
	case TypeNumber:
		r.num, r.hasNum = s.Number, true
	case TypeDate:
		r.low, r.high, r.hasDate = s.Low, s.High, true
	case TypeString, TypeURI:
		r.vString = s.Value
	case TypeReference:
		r.vString = s.URL
		if s.TargetID != "" {
			r.vString = s.TargetType + "/" + s.TargetID
		}
	}
	return r
}

// matchURIAncestors lists u and every URI above it at a '/' boundary
// (http://a/b/c: http://a/b/c, http://a/b, http://a), as sqlstore does for :above.
func matchURIAncestors(u string) []string {
	out := []string{u}
	rest := u
	scheme := strings.Index(u, "://")
	for {
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 || (scheme >= 0 && i <= scheme+2) {
			return out
		}
		rest = rest[:i]
		out = append(out, rest)
	}
}
