package sqlstore

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// This file compiles a search.Query to SQL over the search index (migration 00002); see filter
// for the shape. Index rows exist only for the current version of live resources (they are
// deleted with the resource), so index subqueries need no deleted check of their own; the
// resources they lead to are checked anyway.

// sqlBuilder accumulates the arguments of one statement and hands out aliases.
type sqlBuilder struct {
	args  []any
	alias int
	// localBase is Query.LocalBase: chains and _has follow an absolute reference only when it
	// is on this base.
	localBase string
}

func (b *sqlBuilder) arg(v any) string {
	b.args = append(b.args, v)
	return "$" + strconv.Itoa(len(b.args))
}

func (b *sqlBuilder) next(prefix string) string {
	b.alias++
	return prefix + strconv.Itoa(b.alias)
}

// in renders col = $1 or col IN ($1, $2, ...).
func (b *sqlBuilder) in(col string, vals []string) string {
	if len(vals) == 1 {
		return col + " = " + b.arg(vals[0])
	}
	ps := make([]string, len(vals))
	for i, v := range vals {
		ps[i] = b.arg(v)
	}
	return col + " IN (" + strings.Join(ps, ", ") + ")"
}

// allTypes reports whether types is every resource type (a system search without _type): then
// no type condition is needed.
func allTypes(types []string) bool { return len(types) >= len(fhir.ResourceTypes()) }

// typeCond is the resource-type condition on col, or "" for every type.
func (b *sqlBuilder) typeCond(col string, types []string) string {
	if allTypes(types) {
		return ""
	}
	return b.in(col, types)
}

// and joins the non-empty conditions with AND.
func and(conds ...string) string {
	var keep []string
	for _, c := range conds {
		if c != "" {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		return "1 = 1"
	}
	return strings.Join(keep, " AND ")
}

// filter is the WHERE condition of the resources (alias r) a query matches.
//
// One clause drives the search: it is compiled as `r.pk IN (SELECT res_pk FROM idx_... WHERE
// res_type = ? AND param = ? AND value ...)`, which the database runs first on the lookup index
// (res_type, param, value, res_pk). Every other clause is a correlated EXISTS probe on the
// candidate's own index rows (idx_*_res), so the work is bounded by the driving clause's matches
// and not by the store size. The driver is the most selective clause by a static ranking
// (drivePriority); the patient compartment and references to one resource come first.
func (b *sqlBuilder) filter(q *search.Query, r string) (string, error) {
	driver, best := -1, noDrive
	hasID := false
	if q.Compartment != nil {
		driver, best = -2, 2
	}
	for i, c := range q.Clauses {
		if c.Param != nil && c.Param.Code == "_id" && c.Chain == nil {
			hasID = true
		}
		if p := drivePriority(c); p < best {
			driver, best = i, p
		}
	}
	if hasID {
		// r.id = ? finds the rows by the unique (type, id) index: nothing else needs to drive.
		driver = -1
	}
	b.localBase = q.LocalBase
	conds := []string{r + ".deleted = 0", b.typeScope(r, q.Types, driver != -1)}
	if c := q.Compartment; c != nil {
		if driver == -2 {
			conds = append(conds, r+".pk IN (SELECT res_pk FROM idx_compartment WHERE "+
				and("comp_type = "+b.arg(c.Type), "comp_id = "+b.arg(c.ID), b.typeCond("res_type", q.Types))+")")
		} else {
			conds = append(conds, "EXISTS (SELECT 1 FROM idx_compartment WHERE res_pk = "+r+".pk AND comp_type = "+b.arg(c.Type)+" AND comp_id = "+b.arg(c.ID)+")")
		}
	}
	for i, c := range q.Clauses {
		cond, err := b.clause(c, q.Types, r, i == driver)
		if err != nil {
			return "", err
		}
		conds = append(conds, cond)
	}
	return and(conds...), nil
}

// noDrive is the priority of clauses that cannot drive a search (negations, :missing=true).
const noDrive = 100

// drivePriority ranks how few rows a clause is expected to match: lower drives first.
func drivePriority(c search.Clause) int {
	switch {
	case c.Chain != nil:
		return chainPriority(c.Chain.Clause)
	case c.Reverse != nil:
		return 6
	case c.Param == nil, c.Modifier == "not":
		return noDrive
	case c.Modifier == "missing":
		for _, v := range c.Values {
			if v.Missing {
				return noDrive
			}
		}
		return 9 // :missing=false
	}
	switch c.Param.Code {
	case "_id", "_lastUpdated":
		return noDrive // conditions on the resources row itself
	}
	switch c.Param.Type {
	case search.TypeReference:
		if c.Modifier == "identifier" {
			return 3
		}
		for _, v := range c.Values {
			if v.RefID == "" {
				return 4
			}
		}
		return 2
	case search.TypeToken:
		if c.Modifier == "text" {
			return 8
		}
		for _, v := range c.Values {
			if !v.HasSystem || v.Code == "" {
				return 5
			}
		}
		return 4
	case search.TypeString:
		switch c.Modifier {
		case "exact":
			return 5
		case "contains":
			return 8
		}
		return 6
	case search.TypeURI, search.TypeComposite:
		return 5
	}
	return 7
}

// chainPriority ranks a chain by its inner clause: a chain to one resource named by id or by an
// identifier (subject:Patient.identifier=mrn|123) reaches the few rows that reference it, fewer
// than any plain token; otherwise it is as selective as its inner clause, and never drives ahead
// of a plain clause of the same rank.
func chainPriority(inner search.Clause) int {
	if inner.Param != nil && inner.Chain == nil && inner.Reverse == nil && inner.Modifier == "" &&
		(inner.Param.Code == "_id" || inner.Param.Code == "identifier") {
		return 1
	}
	if p := drivePriority(inner); p < noDrive {
		return max(p+1, 6)
	}
	return 6
}

// typeScope is the type condition on the resources row alias. When a subquery drives (it holds
// the type condition itself), the condition is kept as an expression that no index serves:
// the planner, without statistics on a fresh store, would otherwise prefer walking every
// resource of the type.
func (b *sqlBuilder) typeScope(alias string, types []string, driven bool) string {
	if !driven {
		return b.typeCond(alias+".type", types)
	}
	return b.typeCond("("+alias+".type || '')", types)
}

// localRef is the condition that an idx_reference row (alias i) names a resource of this
// server: relative, or absolute on the local base.
func (b *sqlBuilder) localRef(i string) string {
	if b.localBase == "" {
		return ""
	}
	return "(" + i + ".url = '' OR substr(" + i + ".url, 1, " + strconv.Itoa(len(b.localBase)) + ") = " + b.arg(b.localBase) + ")"
}

// pkDriven reports whether the driving form of c is `pk IN (subquery)`, which needs no type
// condition on the resources row beside it.
func pkDriven(c search.Clause) bool { return drivePriority(c) < noDrive }

// scope is the condition on a resources row alias that an inner clause is evaluated on.
func (b *sqlBuilder) scope(alias, typ string, inner search.Clause) string {
	return b.typeScope(alias, []string{typ}, pkDriven(inner)) + " AND " + alias + ".deleted = 0"
}

// clause compiles one clause to a condition on the resources row r of one of types: as the
// driving IN subquery when drive is set, otherwise as a correlated probe of r's own index rows.
func (b *sqlBuilder) clause(c search.Clause, types []string, r string, drive bool) (string, error) {
	drive = drive && pkDriven(c)
	switch {
	case c.Reverse != nil:
		return b.reverse(c.Reverse, types, r, drive)
	case c.Param == nil:
		return "", fmt.Errorf("sqlstore: search clause without a parameter")
	case c.Chain != nil:
		return b.chain(c, types, r, drive)
	}
	if len(c.Values) == 0 {
		return "", fmt.Errorf("sqlstore: search clause %s without values", c.Param.Code)
	}
	switch c.Param.Code {
	case "_id":
		ids := make([]string, len(c.Values))
		for i, v := range c.Values {
			ids[i] = v.Code
		}
		return b.in(r+".id", ids), nil
	case "_lastUpdated":
		var ors []string
		for _, v := range c.Values {
			ors = append(ors, b.datePred(v, r+".last_updated", r+".last_updated"))
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	}
	table, ok := indexTable[c.Param.Type]
	if !ok {
		return "", fhir.Invalid(c.Param.Code, "the search parameter %s (type %s) is not supported", c.Param.Code, c.Param.Type)
	}
	param := c.Param.Code
	if c.Modifier == "of-type" {
		param += search.OfTypeSuffix
	}
	// rows is the index rows of this parameter: of the types searched when driving, of r when
	// probing.
	rows := func(drive bool) string {
		if drive {
			return "SELECT res_pk FROM " + table + " WHERE " + and(b.typeCond("res_type", types), "param = "+b.arg(param))
		}
		return "SELECT 1 FROM " + table + " WHERE res_pk = " + r + ".pk AND param = " + b.arg(param)
	}
	has := func(drive bool, cond string) string {
		if cond != "" {
			cond = " AND (" + cond + ")"
		}
		if drive {
			return r + ".pk IN (" + rows(true) + cond + ")"
		}
		return "EXISTS (" + rows(false) + cond + ")"
	}
	if c.Modifier == "missing" {
		if drive {
			// Every value is false (drivePriority): the parameter has a value.
			return has(true, ""), nil
		}
		var ors []string
		for _, v := range c.Values {
			if v.Missing {
				ors = append(ors, "NOT "+has(false, ""))
			} else {
				ors = append(ors, has(false, ""))
			}
		}
		return "(" + strings.Join(ors, " OR ") + ")", nil
	}
	cond, grouped := b.tokenSet(c)
	if !grouped {
		var ors []string
		for _, v := range c.Values {
			p, err := b.valuePred(c.Param, c.Modifier, v)
			if err != nil {
				return "", err
			}
			ors = append(ors, "("+p+")")
		}
		cond = strings.Join(ors, " OR ")
	}
	if c.Modifier == "not" {
		// "not: the search returns resources that do not have a matching value", including
		// those with no value at all.
		return "NOT " + has(false, cond), nil
	}
	return has(drive, cond), nil
}

// tokenSet is the condition of a token clause with many system|code values (the policy's
// _security:not over a clearance's hidden labels is one): grouped by system, one code IN list
// each, which the database parses and evaluates faster than one (code AND system) term per
// value. ok is false for the clauses it does not apply to.
func (b *sqlBuilder) tokenSet(c search.Clause) (cond string, ok bool) {
	const minValues = 4
	if c.Param.Type != search.TypeToken || (c.Modifier != "" && c.Modifier != "not") || len(c.Values) < minValues {
		return "", false
	}
	var systems []string
	codes := map[string][]string{}
	for _, v := range c.Values {
		if !v.HasSystem || v.Code == "" {
			return "", false
		}
		if _, seen := codes[v.System]; !seen {
			systems = append(systems, v.System)
		}
		codes[v.System] = append(codes[v.System], v.Code)
	}
	ors := make([]string, 0, len(systems))
	for _, sys := range systems {
		args := make([]string, len(codes[sys]))
		for i, code := range codes[sys] {
			args[i] = b.arg(code)
		}
		ors = append(ors, "(system = "+b.arg(sys)+" AND code IN ("+strings.Join(args, ", ")+"))")
	}
	return strings.Join(ors, " OR "), true
}

var indexTable = map[search.Type]string{
	search.TypeString:    "idx_string",
	search.TypeToken:     "idx_token",
	search.TypeReference: "idx_reference",
	search.TypeDate:      "idx_date",
	search.TypeNumber:    "idx_number",
	search.TypeQuantity:  "idx_quantity",
	search.TypeURI:       "idx_uri",
	search.TypeComposite: "idx_composite",
}

// maxRune bounds a prefix range: every string that starts with p sorts before p + U+10FFFF.
const maxRune = "\U0010FFFF"

// likeEscape escapes the LIKE wildcards of s for ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// prefixPred is a prefix match on col that the index can serve.
func (b *sqlBuilder) prefixPred(col, p string) string {
	return col + " >= " + b.arg(p) + " AND " + col + " < " + b.arg(p+maxRune)
}

// valuePred is the condition on one index row for one value.
func (b *sqlBuilder) valuePred(p *search.Param, mod string, v search.Value) (string, error) {
	switch p.Type {
	case search.TypeString:
		switch mod {
		case "exact":
			return "exact = " + b.arg(v.Raw), nil
		case "contains":
			return `value LIKE ` + b.arg("%"+likeEscape(v.Text)+"%") + ` ESCAPE '\'`, nil
		}
		return b.prefixPred("value", v.Text), nil
	case search.TypeToken:
		switch mod {
		case "text":
			// Matches when a word of the display or text starts with the value.
			t := likeEscape(v.Text)
			return `(text LIKE ` + b.arg(t+"%") + ` ESCAPE '\' OR text LIKE ` + b.arg("% "+t+"%") + ` ESCAPE '\')`, nil
		case "of-type":
			// Identifier rows for :of-type are indexed under "<code>:of-type" with the type
			// coding in system/code and the identifier value, as written, in text.
			return "system = " + b.arg(v.System) + " AND code = " + b.arg(v.Code) + " AND text = " + b.arg(v.Identifier), nil
		}
		return b.tokenPred("system", "code", v), nil
	case search.TypeReference:
		if mod == "identifier" {
			c := "ident_value = " + b.arg(v.Code)
			if v.HasSystem {
				c += " AND ident_system = " + b.arg(v.System)
			}
			return c, nil
		}
		if v.RefURL != "" {
			return "url = " + b.arg(v.RefURL), nil
		}
		c := "target_id = " + b.arg(v.RefID)
		if v.RefType != "" {
			c += " AND target_type = " + b.arg(v.RefType)
		}
		if v.LocalBase != "" {
			// An absolute reference is indexed with its Type/id too; it names a resource of
			// this server only when it is on this server's base.
			c += " AND (url = '' OR substr(url, 1, " + strconv.Itoa(len(v.LocalBase)) + ") = " + b.arg(v.LocalBase) + ")"
		}
		return c, nil
	case search.TypeDate:
		return b.datePred(v, "low", "high"), nil
	case search.TypeNumber:
		return b.numberPred(v, "value"), nil
	case search.TypeQuantity:
		return and(b.numberPred(v, "value"), b.unitPred(v, "system", "code", "unit")), nil
	case search.TypeURI:
		switch mod {
		case "below":
			return b.prefixPred("value", v.Raw), nil
		case "above":
			return b.in("value", uriAncestors(v.Raw)), nil
		}
		return "value = " + b.arg(v.Raw), nil
	case search.TypeComposite:
		return b.compositePred(p, v)
	}
	return "", fhir.Invalid(p.Code, "the search parameter %s (type %s) is not supported", p.Code, p.Type)
}

// tokenPred matches code, system|code, |code and system|.
func (b *sqlBuilder) tokenPred(system, code string, v search.Value) string {
	switch {
	case !v.HasSystem:
		return code + " = " + b.arg(v.Code)
	case v.Code == "":
		return system + " = " + b.arg(v.System)
	default:
		return code + " = " + b.arg(v.Code) + " AND " + system + " = " + b.arg(v.System)
	}
}

// unitPred matches the unit of a quantity: system|code, or ||unit on the code or the unit text.
func (b *sqlBuilder) unitPred(v search.Value, system, code, unit string) string {
	switch {
	case v.HasSystem && v.Code != "":
		return system + " = " + b.arg(v.System) + " AND " + code + " = " + b.arg(v.Code)
	case v.HasSystem:
		return system + " = " + b.arg(v.System)
	case v.Code != "" && unit != "":
		a := b.arg(v.Code)
		return "(" + code + " = " + a + " OR " + unit + " = " + a + ")"
	case v.Code != "":
		return code + " = " + b.arg(v.Code)
	}
	return ""
}

// datePred compares a stored range [low, high] with the value's range [Low, High] as R4 defines
// each prefix.
func (b *sqlBuilder) datePred(v search.Value, low, high string) string {
	// Bind only the bounds a prefix uses: PostgreSQL refuses a statement with a parameter it
	// cannot type because nothing uses it.
	eq := func() string {
		return "(" + low + " >= " + b.arg(v.Low) + " AND " + high + " <= " + b.arg(v.High) + ")"
	}
	switch v.Prefix {
	case "ne":
		return "NOT " + eq()
	case "gt":
		return high + " > " + b.arg(v.High)
	case "lt":
		return low + " < " + b.arg(v.Low)
	case "ge":
		return "(" + high + " > " + b.arg(v.High) + " OR " + eq() + ")"
	case "le":
		return "(" + low + " < " + b.arg(v.Low) + " OR " + eq() + ")"
	case "sa":
		return low + " > " + b.arg(v.High)
	case "eb":
		return high + " < " + b.arg(v.Low)
	case "ap":
		return low + " <= " + b.arg(v.High) + " AND " + high + " >= " + b.arg(v.Low)
	}
	return eq()
}

// numberPred compares a stored number with the value: eq and ne use the range of the value's
// precision, ap its widened range, the others the value itself.
func (b *sqlBuilder) numberPred(v search.Value, col string) string {
	switch v.Prefix {
	case "ne":
		return "NOT (" + col + " >= " + b.arg(v.NumLow) + " AND " + col + " < " + b.arg(v.NumHigh) + ")"
	case "gt", "sa":
		return col + " > " + b.arg(v.Number)
	case "lt", "eb":
		return col + " < " + b.arg(v.Number)
	case "ge":
		return col + " >= " + b.arg(v.Number)
	case "le":
		return col + " <= " + b.arg(v.Number)
	case "ap":
		return col + " >= " + b.arg(v.NumLow) + " AND " + col + " <= " + b.arg(v.NumHigh)
	}
	return col + " >= " + b.arg(v.NumLow) + " AND " + col + " < " + b.arg(v.NumHigh)
}

// compositePred matches both components on one idx_composite row.
func (b *sqlBuilder) compositePred(p *search.Param, v search.Value) (string, error) {
	if len(v.Components) != 2 || len(p.Components) != 2 || p.Components[1].Param == nil {
		return "", fhir.Invalid(p.Code, "the composite search parameter %s is not supported", p.Code)
	}
	first := b.tokenPred("system", "code", v.Components[0])
	sv := v.Components[1]
	var second string
	switch p.Components[1].Param.Type {
	case search.TypeToken:
		second = b.tokenPred("v_system", "v_code", sv)
	case search.TypeQuantity:
		second = and(b.numberPred(sv, "v_num"), b.unitPred(sv, "v_system", "v_code", ""))
	case search.TypeNumber:
		second = b.numberPred(sv, "v_num")
	case search.TypeDate:
		second = b.datePred(sv, "v_low", "v_high")
	case search.TypeString:
		second = b.prefixPred("v_string", sv.Text)
	default:
		return "", fhir.Invalid(p.Code, "the composite search parameter %s is not supported", p.Code)
	}
	return first + " AND " + second, nil
}

// uriAncestors lists u and every URI above it at a '/' boundary
// (http://a/b/c: http://a/b/c, http://a/b, http://a).
func uriAncestors(u string) []string {
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

// chain compiles ref[:Type].next: r refers through ref to a live Type resource matching the
// inner clause and the chain's Filter (what the access policy lets the caller see of Type).
func (b *sqlBuilder) chain(c search.Clause, types []string, r string, drive bool) (string, error) {
	i, t := b.next("i"), b.next("t")
	typ := b.arg(c.Chain.Type)
	param := b.arg(c.Param.Code)
	if drive {
		// From the referenced resources that match, to the rows that point at them.
		inner, err := b.clause(c.Chain.Clause, []string{c.Chain.Type}, t, true)
		if err != nil {
			return "", err
		}
		filter, err := b.targetFilter(c.Chain.Filter, c.Chain.Type, t)
		if err != nil {
			return "", err
		}
		return r + ".pk IN (SELECT " + i + ".res_pk FROM idx_reference " + i + " WHERE " +
			and(b.typeCond(i+".res_type", types), i+".param = "+param, i+".target_type = "+typ, b.localRef(i),
				i+".target_id IN (SELECT "+t+".id FROM resources "+t+" WHERE "+and(b.scope(t, c.Chain.Type, c.Chain.Clause), inner, filter)+")") +
			")", nil
	}
	// From r's own references to the resources they name.
	inner, err := b.clause(c.Chain.Clause, []string{c.Chain.Type}, t, false)
	if err != nil {
		return "", err
	}
	filter, err := b.targetFilter(c.Chain.Filter, c.Chain.Type, t)
	if err != nil {
		return "", err
	}
	return "EXISTS (SELECT 1 FROM idx_reference " + i + " JOIN resources " + t + " ON " + t + ".type = " + i + ".target_type AND " + t + ".id = " + i + ".target_id" +
		" WHERE " + and(i+".res_pk = "+r+".pk", i+".param = "+param, i+".target_type = "+typ, b.localRef(i),
		t+".deleted = 0", inner, filter) + ")", nil
}

// reverse compiles _has:Type:ref:clause: a live Type resource matching the clause and the
// Filter refers to r through ref.
func (b *sqlBuilder) reverse(rv *search.Reverse, types []string, r string, drive bool) (string, error) {
	h, i, t := b.next("h"), b.next("i"), b.next("t")
	typ := b.arg(rv.Type)
	param := b.arg(rv.Param.Code)
	if drive {
		// From the referring resources that match, to the resources they point at.
		inner, err := b.clause(rv.Clause, []string{rv.Type}, h, true)
		if err != nil {
			return "", err
		}
		filter, err := b.targetFilter(rv.Filter, rv.Type, h)
		if err != nil {
			return "", err
		}
		return r + ".pk IN (SELECT " + t + ".pk FROM idx_reference " + i + " JOIN resources " + t +
			" ON " + t + ".type = " + i + ".target_type AND " + t + ".id = " + i + ".target_id WHERE " +
			and(i+".res_type = "+typ, i+".param = "+param, b.typeCond(i+".target_type", types), b.localRef(i),
				i+".res_pk IN (SELECT "+h+".pk FROM resources "+h+" WHERE "+and(b.scope(h, rv.Type, rv.Clause), inner, filter)+")") +
			")", nil
	}
	// From r to the rows that point at it (idx_reference_target), then the referrer itself.
	inner, err := b.clause(rv.Clause, []string{rv.Type}, h, false)
	if err != nil {
		return "", err
	}
	filter, err := b.targetFilter(rv.Filter, rv.Type, h)
	if err != nil {
		return "", err
	}
	return "EXISTS (SELECT 1 FROM idx_reference " + i + " JOIN resources " + h + " ON " + h + ".pk = " + i + ".res_pk" +
		" WHERE " + and(i+".target_type = "+r+".type", i+".target_id = "+r+".id", i+".res_type = "+typ,
		i+".param = "+param, b.localRef(i), h+".deleted = 0", inner, filter) + ")", nil
}

// targetFilter compiles the Filter of a chain or _has on the target resources row (alias) of
// typ: each clause a probe of the row's own index rows, never the driver, so the inner clause
// still leads. "" without a Filter.
func (b *sqlBuilder) targetFilter(filter []search.Clause, typ, alias string) (string, error) {
	conds := make([]string, 0, len(filter))
	for _, f := range filter {
		c, err := b.clause(f, []string{typ}, alias, false)
		if err != nil {
			return "", err
		}
		conds = append(conds, c)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return and(conds...), nil
}

// sortExpr is the value a resource (alias r) sorts by for one key: the lowest of its values
// ascending, the highest descending ("the sort uses the lowest value for ascending and the
// highest for descending"), and a value below every real one when it has none, so that every
// row has a comparable key for keyset paging.
func (b *sqlBuilder) sortExpr(k search.SortKey, r string) (string, error) {
	agg := "MIN"
	if k.Desc {
		agg = "MAX"
	}
	sub := func(expr, table, missing string) string {
		return "COALESCE((SELECT " + agg + "(" + expr + ") FROM " + table + " WHERE res_pk = " + r + ".pk AND param = " + b.arg(k.Param.Code) + "), " + missing + ")"
	}
	const (
		noText = "''"
		noInt  = "-9223372036854775808"
		noReal = "-1.7976931348623157e308"
	)
	switch k.Param.Code {
	case "_id":
		return r + ".id", nil
	case "_lastUpdated":
		return r + ".last_updated", nil
	}
	switch k.Param.Type {
	case search.TypeString:
		return sub("value", "idx_string", noText), nil
	case search.TypeToken:
		return sub("code", "idx_token", noText), nil
	case search.TypeReference:
		return sub("target_type || '/' || target_id || url", "idx_reference", noText), nil
	case search.TypeDate:
		col := "low"
		if k.Desc {
			col = "high"
		}
		return sub(col, "idx_date", noInt), nil
	case search.TypeNumber:
		return sub("value", "idx_number", noReal), nil
	case search.TypeQuantity:
		return sub("value", "idx_quantity", noReal), nil
	case search.TypeURI:
		return sub("value", "idx_uri", noText), nil
	}
	return "", fhir.Invalid("_sort", "cannot sort on the %s parameter %s", k.Param.Type, k.Param.Code)
}
