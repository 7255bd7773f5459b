package search

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// ParseOptions tunes Parse.
type ParseOptions struct {
	// BaseURL is the server's FHIR base (https://example.org/fhir): absolute references on it are
	// searched as local ones.
	BaseURL string
	// DefaultCount is the page size without _count; 0 leaves Query.Count 0 (the backend's default).
	DefaultCount int
	// MaxCount caps _count; 0 means no cap.
	MaxCount int
	// Strict rejects unknown and unsupported parameters with a 400 (Prefer: handling=strict);
	// otherwise they are ignored and reported as warnings.
	Strict bool
	// Now is the clock used for the ap prefix on dates; time.Now when nil.
	Now func() time.Time
}

// Limits that keep one request from compiling to an unbounded database query.
const (
	// MaxValues is the most values (OR and AND together) one search may hold.
	MaxValues = 256
	// MaxChainDepth is the most links of a chain or of nested _has.
	MaxChainDepth = 4
)

// Parameters that the FHIR HTTP layer handles and that mean nothing to a backend.
var transportParams = map[string]bool{"_format": true, "_pretty": true, "_page": true, "_type": true}

// Parameters fhirgate does not support; ignored with a warning, or a 400 under strict handling.
var unsupportedParams = map[string]bool{
	"_contained": true, "_containedType": true, "_text": true, "_content": true, "_list": true,
	"_query": true, "_filter": true, "_score": true, "_graph": true,
}

// errUnknown marks a parameter this server does not know (lenient handling drops it).
var errUnknown = errors.New("unknown search parameter")

type unknownError struct {
	name, detail string
}

func (e *unknownError) Error() string { return e.detail }
func (e *unknownError) Unwrap() error { return errUnknown }

func unknownf(name, format string, args ...any) error {
	return &unknownError{name: name, detail: fmt.Sprintf(format, args...)}
}

// Parse turns the parameters of a search over types into a Query. It returns warnings for what
// lenient handling ignored, and a 400 *fhir.Error (naming the parameter in its expression) for
// an invalid value, an unsupported modifier, or — under ParseOptions.Strict — an unknown
// parameter. Repeated parameters are ANDed, comma-separated values ORed ("\," escapes a comma).
func Parse(reg *Registry, types []string, params url.Values, opts ParseOptions) (*Query, []string, error) {
	if reg == nil {
		return nil, nil, errors.New("search: Parse without a registry")
	}
	if len(types) == 0 {
		return nil, nil, fhir.Invalid("", "the search names no resource type")
	}
	for _, t := range types {
		if !fhir.IsResourceType(t) {
			return nil, nil, fhir.Invalid("", "%q is not a FHIR R4 resource type", truncate(t))
		}
	}
	p := &parser{reg: reg, opts: opts, vo: valueOptions{baseURL: opts.BaseURL}}
	if opts.Now != nil {
		p.vo.now = opts.Now()
	} else {
		p.vo.now = time.Now()
	}
	q := &Query{Types: slices.Clone(types), Count: opts.DefaultCount, LocalBase: p.vo.localBase()}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		vals := params[key]
		name, mod, _ := strings.Cut(key, ":")
		var err error
		switch {
		case transportParams[key]:
		case key == "_count":
			err = p.count(q, vals)
		case key == "_sort":
			err = p.sort(q, vals)
		case key == "_summary":
			err = p.summary(q, vals)
		case key == "_total":
			err = p.total(q, vals)
		case key == "_elements":
			err = p.elements(q, vals)
		case name == "_include" || name == "_revinclude":
			err = p.include(q, name, mod, vals)
		case unsupportedParams[name]:
			err = unknownf(key, "the search parameter %s is not supported", key)
		default:
			for _, raw := range vals {
				c, ok, cerr := p.clause(types, key, raw, 0)
				if cerr != nil {
					err = cerr
					break
				}
				if ok {
					q.Clauses = append(q.Clauses, c)
				}
			}
		}
		if err == nil {
			continue
		}
		var u *unknownError
		if !errors.As(err, &u) {
			return nil, nil, err
		}
		if opts.Strict {
			fe := fhir.Errorf(http.StatusBadRequest, "not-supported", "%s", u.detail)
			fe.Expression = []string{truncate(key)}
			return nil, nil, fe
		}
		p.warnings = append(p.warnings, u.detail+"; it was ignored")
	}
	if p.values > MaxValues {
		return nil, nil, fhir.Invalid("", "the search holds %d values; at most %d are allowed", p.values, MaxValues)
	}
	return q, p.warnings, nil
}

// ParseClause parses one parameter occurrence (key and its comma-separated value, as in a query
// string) of a search over types: what the policy engine uses to add a constraint to a Query.
// Unknown parameters are errors.
func ParseClause(reg *Registry, types []string, key, value string, opts ParseOptions) (Clause, error) {
	if reg == nil || len(types) == 0 {
		return Clause{}, errors.New("search: ParseClause without a registry or types")
	}
	p := &parser{reg: reg, opts: opts, vo: valueOptions{baseURL: opts.BaseURL, now: time.Now()}}
	if opts.Now != nil {
		p.vo.now = opts.Now()
	}
	c, ok, err := p.clause(types, key, value, 0)
	if err != nil {
		var u *unknownError
		if errors.As(err, &u) {
			fe := fhir.Errorf(http.StatusBadRequest, "not-supported", "%s", u.detail)
			fe.Expression = []string{truncate(key)}
			return c, fe
		}
		return c, err
	}
	if !ok {
		return c, fhir.Invalid(key, "the search parameter %s has no value", truncate(key))
	}
	return c, nil
}

type parser struct {
	reg      *Registry
	opts     ParseOptions
	vo       valueOptions
	warnings []string
	values   int
}

// lookup finds code on every type of a search; it must be defined, with one parameter type, on
// each of them.
func (p *parser) lookup(types []string, code string) (*Param, error) {
	var first *Param
	for _, t := range types {
		prm, ok := p.reg.Lookup(t, code)
		if !ok {
			if len(types) == 1 {
				return nil, unknownf(code, "%s has no search parameter %s", t, truncate(code))
			}
			return nil, unknownf(code, "the search parameter %s is not defined for every type searched (not for %s)", truncate(code), t)
		}
		if first == nil {
			first = prm
		} else if prm.Type != first.Type {
			return nil, unknownf(code, "the search parameter %s has different types across the types searched", truncate(code))
		}
	}
	if first.Type == TypeSpecial {
		return nil, unknownf(code, "the search parameter %s (type special) is not supported", truncate(code))
	}
	return first, nil
}

// clause parses one key=value occurrence. ok is false when the value is empty ("parameters with
// no value are ignored").
func (p *parser) clause(types []string, key, raw string, depth int) (Clause, bool, error) {
	if depth > MaxChainDepth {
		return Clause{}, false, fhir.Invalid(truncate(key), "the chain %s is longer than %d links", truncate(key), MaxChainDepth)
	}
	if rest, ok := strings.CutPrefix(key, "_has:"); ok {
		return p.reverse(types, key, rest, raw, depth)
	}
	head, chain, isChain := strings.Cut(key, ".")
	code, mod, _ := strings.Cut(head, ":")
	prm, err := p.lookup(types, code)
	if err != nil {
		return Clause{}, false, err
	}
	if isChain {
		return p.chain(types, prm, key, mod, chain, raw, depth)
	}
	if err := checkModifier(prm, code, mod); err != nil {
		return Clause{}, false, err
	}
	c := Clause{Param: prm, Modifier: mod}
	for _, piece := range splitEscaped(raw, ',') {
		if piece == "" {
			continue
		}
		p.values++
		if p.values > MaxValues {
			return Clause{}, false, fhir.Invalid("", "the search holds more than %d values", MaxValues)
		}
		v, err := parseValue(prm, mod, piece, truncate(key), p.vo)
		if err != nil {
			return Clause{}, false, err
		}
		c.Values = append(c.Values, v)
	}
	if len(c.Values) == 0 {
		return Clause{}, false, nil
	}
	if code == "_id" && (mod != "" || slices.ContainsFunc(c.Values, func(v Value) bool { return v.HasSystem })) {
		return Clause{}, false, fhir.Invalid("_id", "_id takes plain ids")
	}
	return c, true, nil
}

// chain parses ref[:Type].rest.
func (p *parser) chain(types []string, prm *Param, key, typ, rest, raw string, depth int) (Clause, bool, error) {
	if prm.Type != TypeReference {
		return Clause{}, false, fhir.Invalid(truncate(key), "%s is not a reference parameter and cannot be chained", prm.Code)
	}
	if rest == "" {
		return Clause{}, false, fhir.Invalid(truncate(key), "the chain %s has no parameter after the '.'", truncate(key))
	}
	next, _, _ := strings.Cut(rest, ".")
	next, _, _ = strings.Cut(next, ":")
	if typ != "" {
		if !fhir.IsResourceType(typ) || (len(prm.Targets) > 0 && !contains(prm.Targets, typ)) {
			return Clause{}, false, fhir.Invalid(truncate(key), "search parameter %s cannot refer to a %s", prm.Code, truncate(typ))
		}
	} else {
		// "If the reference may point to several types, the client must name one": the types
		// on which the next parameter exists must be exactly one.
		var cands []string
		for _, t := range prm.Targets {
			if _, ok := p.reg.Lookup(t, next); ok {
				cands = append(cands, t)
			}
		}
		switch len(cands) {
		case 0:
			return Clause{}, false, unknownf(key, "no type that %s refers to has a search parameter %s", prm.Code, truncate(next))
		case 1:
			typ = cands[0]
		default:
			return Clause{}, false, fhir.Invalid(truncate(key), "the chain %s is ambiguous: %s may refer to %s; name the type as %s:Type.%s", truncate(key), prm.Code, strings.Join(cands, ", "), prm.Code, truncate(next))
		}
	}
	inner, ok, err := p.clause([]string{typ}, rest, raw, depth+1)
	if err != nil || !ok {
		return Clause{}, ok, err
	}
	return Clause{Param: prm, Chain: &Chain{Type: typ, Clause: inner}}, true, nil
}

// reverse parses _has:Type:ref:rest.
func (p *parser) reverse(types []string, key, rest, raw string, depth int) (Clause, bool, error) {
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || parts[2] == "" {
		return Clause{}, false, fhir.Invalid(truncate(key), "_has takes the form _has:Type:reference:parameter")
	}
	typ, refCode, inner := parts[0], parts[1], parts[2]
	if !fhir.IsResourceType(typ) {
		return Clause{}, false, fhir.Invalid(truncate(key), "%q in %s is not a FHIR R4 resource type", truncate(typ), truncate(key))
	}
	ref, ok := p.reg.Lookup(typ, refCode)
	if !ok {
		return Clause{}, false, unknownf(key, "%s has no search parameter %s", typ, truncate(refCode))
	}
	if ref.Type != TypeReference {
		return Clause{}, false, fhir.Invalid(truncate(key), "%s.%s is not a reference parameter", typ, refCode)
	}
	if len(ref.Targets) > 0 && !slices.ContainsFunc(types, func(t string) bool { return contains(ref.Targets, t) }) {
		return Clause{}, false, fhir.Invalid(truncate(key), "%s.%s cannot refer to %s", typ, refCode, strings.Join(types, ", "))
	}
	c, ok, err := p.clause([]string{typ}, inner, raw, depth+1)
	if err != nil || !ok {
		return Clause{}, ok, err
	}
	return Clause{Reverse: &Reverse{Type: typ, Param: ref, Clause: c}}, true, nil
}

// checkModifier allows the modifiers fhirgate implements for the parameter's type.
func checkModifier(prm *Param, code, mod string) error {
	if mod == "" {
		return nil
	}
	if code == "_id" || code == "_lastUpdated" {
		return fhir.Invalid(code, "the modifier :%s is not supported on %s", truncate(mod), code)
	}
	ok := mod == "missing"
	switch prm.Type {
	case TypeString:
		ok = ok || mod == "exact" || mod == "contains"
	case TypeToken:
		ok = ok || mod == "not" || mod == "text" ||
			(mod == "of-type" && (code == "identifier" || strings.HasSuffix(prm.Expression, ".identifier")))
	case TypeReference:
		ok = ok || mod == "identifier" ||
			(fhir.IsResourceType(mod) && (len(prm.Targets) == 0 || contains(prm.Targets, mod)))
	case TypeURI:
		ok = ok || mod == "below" || mod == "above"
	}
	if !ok {
		return fhir.Invalid(code+":"+truncate(mod), "the modifier :%s is not supported on the %s parameter %s", truncate(mod), prm.Type, code)
	}
	return nil
}

func single(name string, vals []string) (string, error) {
	if len(vals) != 1 {
		return "", fhir.Invalid(name, "%s may appear only once", name)
	}
	return vals[0], nil
}

func (p *parser) count(q *Query, vals []string) error {
	s, err := single("_count", vals)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return invalidValue("_count", s, "a non-negative integer")
	}
	if n == 0 {
		// "_count=0 ... the server returns only the total".
		q.Summary = SummaryCount
		return nil
	}
	if p.opts.MaxCount > 0 && n > p.opts.MaxCount {
		p.warnings = append(p.warnings, fmt.Sprintf("_count=%d is above this server's maximum; pages hold %d", n, p.opts.MaxCount))
		n = p.opts.MaxCount
	}
	q.Count = n
	return nil
}

func (p *parser) sort(q *Query, vals []string) error {
	for _, v := range vals {
		for key := range strings.SplitSeq(v, ",") {
			key = strings.TrimSpace(key)
			if key == "" {
				continue
			}
			desc := false
			if rest, ok := strings.CutPrefix(key, "-"); ok {
				key, desc = rest, true
			}
			prm, err := p.lookup(q.Types, key)
			if err != nil {
				return err
			}
			if prm.Type == TypeComposite {
				return fhir.Invalid("_sort", "cannot sort on the composite parameter %s", key)
			}
			if slices.ContainsFunc(q.Sort, func(k SortKey) bool { return k.Param.Code == prm.Code }) {
				return fhir.Invalid("_sort", "_sort names %s twice", key)
			}
			q.Sort = append(q.Sort, SortKey{Param: prm, Desc: desc})
			if len(q.Sort) > 8 {
				return fhir.Invalid("_sort", "_sort takes at most 8 keys")
			}
		}
	}
	return nil
}

func (p *parser) summary(q *Query, vals []string) error {
	s, err := single("_summary", vals)
	if err != nil {
		return err
	}
	switch s {
	case "true", "text", "data", "count", "false":
		if q.Summary != SummaryCount { // _count=0 wins
			q.Summary = s
		}
		return nil
	}
	return invalidValue("_summary", s, "true, text, data, count or false")
}

func (p *parser) total(q *Query, vals []string) error {
	s, err := single("_total", vals)
	if err != nil {
		return err
	}
	switch s {
	case TotalNone, TotalEstimate, TotalAccurate:
		q.Total = s
		return nil
	}
	return invalidValue("_total", s, "none, estimate or accurate")
}

var elementRE = regexp.MustCompile(`^(?:[A-Z][A-Za-z]*\.)?[a-z][A-Za-z0-9]*(?:\[x\])?$`)

func (p *parser) elements(q *Query, vals []string) error {
	for _, v := range vals {
		for e := range strings.SplitSeq(v, ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if !elementRE.MatchString(e) {
				return invalidValue("_elements", e, "element names")
			}
			q.Elements = append(q.Elements, e)
		}
	}
	return nil
}

// include parses _include / _revinclude values: *, Type:param, Type:param:Target or Type:*.
func (p *parser) include(q *Query, name, mod string, vals []string) error {
	var iterate bool
	switch mod {
	case "":
	case "iterate", "recurse":
		iterate = true
	default:
		return fhir.Invalid(name+":"+truncate(mod), "the modifier :%s is not supported on %s", truncate(mod), name)
	}
	for _, v := range vals {
		for item := range strings.SplitSeq(v, ",") {
			if item == "" {
				continue
			}
			inc, err := p.includeItem(name, item)
			if err != nil {
				return err
			}
			inc.Iterate = iterate
			if name == "_include" {
				q.Includes = append(q.Includes, inc)
			} else {
				q.RevIncludes = append(q.RevIncludes, inc)
			}
			if len(q.Includes)+len(q.RevIncludes) > 32 {
				return fhir.Invalid(name, "a search may hold at most 32 _include and _revinclude values")
			}
		}
	}
	return nil
}

func (p *parser) includeItem(name, item string) (Include, error) {
	if item == "*" {
		return Include{}, nil
	}
	parts := strings.Split(item, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Include{}, invalidValue(name, item, "Type:parameter[:targetType] or *")
	}
	inc := Include{Type: parts[0]}
	if !fhir.IsResourceType(inc.Type) {
		return Include{}, invalidValue(name, item, "Type:parameter[:targetType] with a FHIR R4 resource type")
	}
	if parts[1] != "*" {
		prm, ok := p.reg.Lookup(inc.Type, parts[1])
		if !ok {
			return Include{}, unknownf(name, "%s=%s: %s has no search parameter %s", name, truncate(item), inc.Type, truncate(parts[1]))
		}
		if prm.Type != TypeReference {
			return Include{}, invalidValue(name, item, "a reference parameter")
		}
		inc.Param = prm
	}
	if len(parts) == 3 {
		inc.Target = parts[2]
		if !fhir.IsResourceType(inc.Target) || (inc.Param != nil && len(inc.Param.Targets) > 0 && !contains(inc.Param.Targets, inc.Target)) {
			return Include{}, invalidValue(name, item, "a target type the parameter may refer to")
		}
	}
	return inc, nil
}
