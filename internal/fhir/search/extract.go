package search

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Entry is one search index value of a resource: one row of the index table of its Type. Which
// fields are set depends on Type:
//
//   - string: Value (Normalize'd) and Exact (as written);
//   - token: System and Code ("" when absent) and Text (the Normalize'd display,
//     CodeableConcept.text or Identifier.type.text, for :text). Identifiers also yield rows
//     under Param "<code>:of-type" with the identifier type coding in System/Code and the
//     identifier value, as written, in Text;
//   - reference: TargetType/TargetID for a Type/id reference (relative, or absolute with the
//     URL also kept in URL), URL alone for any other absolute or canonical reference,
//     IdentSystem/IdentValue for Reference.identifier;
//   - date: Low and High, the inclusive range of unix microseconds UTC the value covers;
//   - number: Number;
//   - quantity: Number, with System/Code the coded unit and Unit the unit as written;
//   - uri: Value, as written;
//   - composite: System/Code of the first (pathToken) component and Second, the entry of the
//     second component (its Type says which fields it sets).
type Entry struct {
	Param string
	Type  Type

	Value, Exact string

	System, Code, Text, Unit string

	TargetType, TargetID, URL string
	IdentSystem, IdentValue   string

	Low, High int64

	Number float64

	Second *Entry
}

// OfTypeSuffix is appended to a pathToken parameter code for the Identifier.type rows of :of-type.
const OfTypeSuffix = ":of-type"

// ErrNotIndexable is wrapped by Extract's errors: the body is not a JSON resource of the type.
var ErrNotIndexable = errors.New("search: resource cannot be indexed")

// Extractor computes the index entries of resources. Build it once (NewExtractor) from a
// Registry: it compiles every parameter expression up front. It is safe for concurrent use.
type Extractor struct {
	m           *typeModel
	byType      map[string][]*compiled
	unsupported []string
}

// compiled is one parameter of one resource type, ready to run.
type compiled struct {
	p     *Param
	e     *expr
	comps []*expr // composite: the component expressions, relative to each element e selects
	// rootKeys are the JSON properties of the resource the expression starts from; when none is
	// present the parameter has no value and is skipped. nil: always evaluate.
	rootKeys []string
}

// NewExtractor compiles every parameter of reg. Parameters whose expression is outside the
// supported FHIRPath subset, special parameters and parameters without an expression are not
// indexed; Unsupported lists them.
func NewExtractor(reg *Registry) (*Extractor, error) {
	m, err := elementModel()
	if err != nil {
		return nil, err
	}
	x := &Extractor{m: m, byType: map[string][]*compiled{}}
	for _, typ := range fhir.ResourceTypes() {
		for _, p := range reg.Params(typ) {
			c, err := x.compile(typ, p)
			if err != nil {
				x.unsupported = append(x.unsupported, typ+"."+p.Code+": "+err.Error())
				continue
			}
			if c != nil {
				x.byType[typ] = append(x.byType[typ], c)
			}
		}
	}
	return x, nil
}

// Unsupported lists the parameters that are not indexed, as "Type.code: reason".
func (x *Extractor) Unsupported() []string { return x.unsupported }

var errNotIndexed = errors.New("not indexed")

func (x *Extractor) compile(typ string, p *Param) (*compiled, error) {
	switch {
	case p.Type == TypeSpecial:
		return nil, fmt.Errorf("%w: special parameter", errNotIndexed)
	case p.Expression == "":
		return nil, fmt.Errorf("%w: no expression", errNotIndexed)
	}
	e, err := parsePath(p.Expression)
	if err != nil {
		return nil, err
	}
	focus := typeSet{typ: true}
	types, err := x.m.check(e, focus, focus)
	if err != nil {
		return nil, err
	}
	c := &compiled{p: p, e: e, rootKeys: x.rootKeys(typ, e)}
	if p.Type != TypeComposite {
		return c, nil
	}
	if len(p.Components) != 2 {
		return nil, fmt.Errorf("%w: composite of %d components", errNotIndexed, len(p.Components))
	}
	for i, comp := range p.Components {
		if comp.Param == nil {
			return nil, fmt.Errorf("%w: component %s not defined", errNotIndexed, comp.Definition)
		}
		if i == 0 && comp.Param.Type != TypeToken {
			return nil, fmt.Errorf("%w: first component is %s, not token", errNotIndexed, comp.Param.Type)
		}
		ce, err := parsePath(comp.Expression)
		if err != nil {
			return nil, err
		}
		if _, err := x.m.check(ce, types, focus); err != nil {
			return nil, fmt.Errorf("component %s: %w", comp.Expression, err)
		}
		c.comps = append(c.comps, ce)
	}
	return c, nil
}

// rootKeys finds the resource properties an expression reads first (nil when it cannot tell).
func (x *Extractor) rootKeys(typ string, e *expr) []string {
	switch e.kind {
	case kBinary:
		if e.name != "|" {
			return nil
		}
		l, r := x.rootKeys(typ, e.left), x.rootKeys(typ, e.right)
		if l == nil || r == nil {
			return nil
		}
		return append(l, r...)
	case kTypeOp:
		return x.rootKeys(typ, e.left)
	case kMember:
		if e.target == nil || e.target.kind != kTypeRef || e.target.target != nil {
			return nil
		}
		var keys []string
		for _, p := range x.m.lookup(typ, e.name) {
			keys = append(keys, p.key)
		}
		if keys == nil {
			return nil
		}
		return keys
	case kFunc, kIndex:
		if e.target == nil {
			return nil
		}
		return x.rootKeys(typ, e.target)
	}
	return nil
}

var extractors sync.Map // weak.Pointer[Registry] -> *Extractor

// Extract returns the index entries of a resource of resourceType, compiling the registry's
// expressions on first use (the Extractor is kept for as long as the Registry lives).
func (r *Registry) Extract(resourceType string, body []byte) ([]Entry, error) {
	x, err := r.extractor()
	if err != nil {
		return nil, err
	}
	return x.Extract(resourceType, body)
}

func (r *Registry) extractor() (*Extractor, error) {
	key := weak.Make(r)
	if v, ok := extractors.Load(key); ok {
		return v.(*Extractor), nil
	}
	x, err := NewExtractor(r)
	if err != nil {
		return nil, err
	}
	if v, loaded := extractors.LoadOrStore(key, x); loaded {
		return v.(*Extractor), nil
	}
	runtime.AddCleanup(r, func(k weak.Pointer[Registry]) { extractors.Delete(k) }, key)
	return x, nil
}

// Extract decodes body, a resource of resourceType, and returns its index entries, parameter
// by parameter in code order. It always includes _id (from id) and, when present,
// _lastUpdated, _tag, _security, _profile and _source (from meta).
func (x *Extractor) Extract(resourceType string, body []byte) ([]Entry, error) {
	v, err := x.m.decodeJSON(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotIndexable, err)
	}
	res, _ := v.(map[string]any)
	return x.ExtractDecoded(resourceType, res)
}

// ExtractDecoded is Extract over an already decoded resource.
func (x *Extractor) ExtractDecoded(resourceType string, res map[string]any) ([]Entry, error) {
	if res == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrNotIndexable)
	}
	if rt, _ := res["resourceType"].(string); rt != resourceType {
		return nil, fmt.Errorf("%w: resourceType %q is not %q", ErrNotIndexable, rt, resourceType)
	}
	params, ok := x.byType[resourceType]
	if !ok && !fhir.IsResourceType(resourceType) {
		return nil, fmt.Errorf("%w: unknown resource type %q", ErrNotIndexable, resourceType)
	}
	root := pathItem{v: res, t: resourceType}
	ev := newEvaluator(x.m, root)
	defer ev.done()
	focus := ev.one(root)
	buf := entryScratch.Get().(*[]Entry)
	out := (*buf)[:0]
	defer func() {
		clear(out) // drop the strings the buffer holds
		*buf = out[:0]
		entryScratch.Put(buf)
	}()
	for _, c := range params {
		if c.rootKeys != nil && !hasAny(res, c.rootKeys) {
			continue
		}
		items := ev.eval(c.e, focus)
		if len(items) == 0 {
			continue
		}
		if c.p.Type == TypeComposite {
			out = x.composite(ev, c, items, out)
			continue
		}
		for _, it := range items {
			out = appendValues(out, c.p.Code, c.p.Type, it)
		}
	}
	return slices.Clone(out), nil
}

// entryScratch holds the buffers entries are collected in, so that Extract allocates its result
// once at its final size.
var entryScratch = sync.Pool{New: func() any { b := make([]Entry, 0, 64); return &b }}

func hasAny(obj map[string]any, keys []string) bool {
	for _, k := range keys {
		if _, ok := obj[k]; ok {
			return true
		}
	}
	return false
}

// composite pairs the first component's tokens with the second component's values, element by
// element.
func (x *Extractor) composite(ev *evaluator, c *compiled, elems []pathItem, out []Entry) []Entry {
	second := c.p.Components[1].Param
	firsts, seconds := ev.firsts[:0], ev.seconds[:0]
	defer func() {
		clear(firsts[:cap(firsts)]) // drop every string the scratch held, not only the last element's
		clear(seconds[:cap(seconds)])
		ev.firsts, ev.seconds = firsts[:0], seconds[:0]
	}()
	for _, el := range elems {
		firsts, seconds = firsts[:0], seconds[:0]
		focus := ev.one(el)
		// The second component first: it is the one most often absent.
		for _, it := range ev.eval(c.comps[1], focus) {
			seconds = appendValues(seconds, second.Code, second.Type, it)
		}
		if len(seconds) == 0 {
			continue
		}
		for _, it := range ev.eval(c.comps[0], focus) {
			firsts = appendValues(firsts, "", TypeToken, it)
		}
		for _, f := range firsts {
			if f.Param != "" || f.Code == "" { // an :of-type row, or text without a code
				continue
			}
			for i := range seconds {
				s := seconds[i]
				if s.Param != second.Code {
					continue
				}
				out = append(out, Entry{Param: c.p.Code, Type: TypeComposite, System: f.System, Code: f.Code, Text: f.Text, Second: &s})
			}
		}
	}
	return out
}

// appendValues appends the entries of one pathItem for a parameter of type typ.
func appendValues(out []Entry, code string, typ Type, it pathItem) []Entry {
	switch typ {
	case TypeString:
		return appendStrings(out, code, it)
	case TypeToken:
		return appendTokens(out, code, it)
	case TypeReference:
		return appendReferences(out, code, it)
	case TypeDate:
		return appendDates(out, code, it)
	case TypeNumber:
		return appendNumbers(out, code, it)
	case TypeQuantity:
		return appendQuantities(out, code, it)
	case TypeURI:
		if s, ok := it.v.(string); ok && s != "" && stringPrimitives[it.t] {
			out = append(out, Entry{Param: code, Type: TypeURI, Value: capString(s)})
			if base, _, versioned := strings.Cut(s, "|"); versioned && base != "" && it.t == "canonical" {
				out = append(out, Entry{Param: code, Type: TypeURI, Value: capString(base)})
			}
		}
	}
	return out
}

// str reads a string property of a JSON object.
func jsonStr(obj map[string]any, key string) string {
	s, _ := obj[key].(string)
	return s
}

// strs reads a string or array-of-strings property.
func jsonStrs(obj map[string]any, key string, f func(string)) {
	switch v := obj[key].(type) {
	case string:
		f(v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				f(s)
			}
		}
	}
}

// objs calls f for an object or each object of an array property.
func jsonObjs(obj map[string]any, key string, f func(map[string]any)) {
	switch v := obj[key].(type) {
	case map[string]any:
		f(v)
	case []any:
		for _, x := range v {
			if o, ok := x.(map[string]any); ok {
				f(o)
			}
		}
	}
}

// stringParts are the parts of composite datatypes that a string search matches.
var stringParts = map[string][]string{
	"HumanName":       {"text", "family", "given", "prefix", "suffix"},
	"Address":         {"text", "line", "city", "district", "state", "postalCode", "country"},
	"CodeableConcept": {"text"},
	"Coding":          {"display"},
	"ContactPoint":    {"value"},
	"Identifier":      {"value"},
	"Annotation":      {"text"},
}

func appendStrings(out []Entry, code string, it pathItem) []Entry {
	add := func(s string) {
		if strings.TrimSpace(s) == "" {
			return
		}
		s = capString(s)
		out = append(out, Entry{Param: code, Type: TypeString, Value: Normalize(s), Exact: s})
	}
	switch v := it.v.(type) {
	case string:
		if stringPrimitives[it.t] {
			add(v)
		}
	case map[string]any:
		for _, k := range stringParts[it.t] {
			jsonStrs(v, k, add)
		}
		if it.t == "CodeableConcept" {
			jsonObjs(v, "coding", func(c map[string]any) { add(jsonStr(c, "display")) })
		}
	}
	return out
}

func appendTokens(out []Entry, code string, it pathItem) []Entry {
	switch v := it.v.(type) {
	case string:
		if v != "" && stringPrimitives[it.t] {
			out = append(out, Entry{Param: code, Type: TypeToken, Code: capString(v)})
		}
	case bool:
		if it.t == "boolean" {
			out = append(out, Entry{Param: code, Type: TypeToken, Code: strconv.FormatBool(v)})
		}
	case float64:
		if !isNumeric(it.t) {
			break
		}
		out = append(out, Entry{Param: code, Type: TypeToken, Code: strconv.FormatFloat(v, 'f', -1, 64)})
	case map[string]any:
		switch it.t {
		case "Coding":
			out = appendCoding(out, code, v, "")
		case "CodeableConcept":
			text := jsonStr(v, "text")
			n := len(out)
			jsonObjs(v, "coding", func(c map[string]any) { out = appendCoding(out, code, c, text) })
			if len(out) == n && strings.TrimSpace(text) != "" {
				out = append(out, Entry{Param: code, Type: TypeToken, Text: Normalize(capString(text))})
			}
		case "Identifier":
			value := jsonStr(v, "value")
			if value == "" {
				break
			}
			var typeText string
			if t, ok := v["type"].(map[string]any); ok {
				typeText = jsonStr(t, "text")
				jsonObjs(t, "coding", func(c map[string]any) {
					if tc := jsonStr(c, "code"); tc != "" {
						out = append(out, Entry{Param: code + OfTypeSuffix, Type: TypeToken, System: capString(jsonStr(c, "system")), Code: capString(tc), Text: capString(value)})
					}
				})
			}
			out = append(out, Entry{Param: code, Type: TypeToken, System: capString(jsonStr(v, "system")), Code: capString(value), Text: Normalize(capString(typeText))})
		case "ContactPoint":
			// "ContactPoint: the pathToken matches ContactPoint.value; the system is not used".
			if value := jsonStr(v, "value"); value != "" {
				out = append(out, Entry{Param: code, Type: TypeToken, Code: capString(value)})
			}
		}
	}
	return out
}

// appendCoding adds the pathToken of a Coding; ccText is the text of its CodeableConcept.
func appendCoding(out []Entry, code string, c map[string]any, ccText string) []Entry {
	system, cd, display := jsonStr(c, "system"), jsonStr(c, "code"), jsonStr(c, "display")
	text := display
	if ccText != "" {
		text = strings.TrimSpace(ccText + " " + display)
	}
	if system == "" && cd == "" && strings.TrimSpace(text) == "" {
		return out
	}
	return append(out, Entry{Param: code, Type: TypeToken, System: capString(system), Code: capString(cd), Text: Normalize(capString(text))})
}

func appendReferences(out []Entry, code string, it pathItem) []Entry {
	switch v := it.v.(type) {
	case string:
		// canonical, uri, url: compared as written; a versioned canonical (url|1.0) is also
		// indexed without its version, so that a search by the bare URL finds it.
		if v == "" || !stringPrimitives[it.t] {
			break
		}
		out = append(out, Entry{Param: code, Type: TypeReference, URL: capString(v)})
		if base, _, versioned := strings.Cut(v, "|"); versioned && base != "" && it.t == "canonical" {
			out = append(out, Entry{Param: code, Type: TypeReference, URL: capString(base)})
		}
	case map[string]any:
		if fhir.IsResourceType(it.t) {
			// A resource in place of a reference (Bundle.entry[0].resource): index it as Type/id.
			if id := jsonStr(v, "id"); validID(id) {
				out = append(out, Entry{Param: code, Type: TypeReference, TargetType: it.t, TargetID: id})
			}
			break
		}
		if it.t != "Reference" {
			break
		}
		e := Entry{Param: code, Type: TypeReference}
		e.TargetType, e.TargetID, e.URL = splitReference(jsonStr(v, "reference"))
		e.URL = capString(e.URL)
		if ident, ok := v["identifier"].(map[string]any); ok {
			e.IdentSystem, e.IdentValue = capString(jsonStr(ident, "system")), capString(jsonStr(ident, "value"))
		}
		if e.TargetID != "" || e.URL != "" || e.IdentValue != "" {
			out = append(out, e)
		}
	}
	return out
}

// Open ends of a Period.
const (
	minTime = math.MinInt64
	maxTime = math.MaxInt64
)

func appendDates(out []Entry, code string, it pathItem) []Entry {
	add := func(low, high int64) {
		out = append(out, Entry{Param: code, Type: TypeDate, Low: low, High: high})
	}
	switch v := it.v.(type) {
	case string:
		if it.t != "date" && it.t != "dateTime" && it.t != "instant" {
			break
		}
		if low, high, ok := DateRange(v); ok {
			add(low, high)
		}
	case map[string]any:
		switch it.t {
		case "Period":
			out = appendPeriod(out, code, v)
		case "Timing":
			jsonStrs(v, "event", func(s string) {
				if low, high, ok := DateRange(s); ok {
					add(low, high)
				}
			})
			if r, ok := v["repeat"].(map[string]any); ok {
				if p, ok := r["boundsPeriod"].(map[string]any); ok {
					out = appendPeriod(out, code, p)
				}
			}
		}
	}
	return out
}

// appendPeriod adds [start, end]; a missing start or end is open.
func appendPeriod(out []Entry, code string, p map[string]any) []Entry {
	low, high := int64(minTime), int64(maxTime)
	var okS, okE bool
	if s := jsonStr(p, "start"); s != "" {
		low, _, okS = DateRange(s)
		if !okS {
			low = minTime
		}
	}
	if s := jsonStr(p, "end"); s != "" {
		_, high, okE = DateRange(s)
		if !okE {
			high = maxTime
		}
	}
	if !okS && !okE {
		return out
	}
	return append(out, Entry{Param: code, Type: TypeDate, Low: low, High: high})
}

func appendNumbers(out []Entry, code string, it pathItem) []Entry {
	switch v := it.v.(type) {
	case float64:
		if isNumeric(it.t) {
			out = append(out, Entry{Param: code, Type: TypeNumber, Number: v})
		}
	case map[string]any:
		add := func(q map[string]any) {
			if n, ok := q["value"].(float64); ok {
				out = append(out, Entry{Param: code, Type: TypeNumber, Number: n})
			}
		}
		switch it.t {
		case "Range":
			jsonObjs(v, "low", add)
			jsonObjs(v, "high", add)
		default:
			if isType(it.t, "Quantity") {
				add(v)
			}
		}
	}
	return out
}

// systemISO4217 is the system of Money.currency codes.
const systemISO4217 = "urn:iso:std:iso:4217"

func appendQuantities(out []Entry, code string, it pathItem) []Entry {
	v, ok := it.v.(map[string]any)
	if !ok {
		if n, ok := it.v.(float64); ok && isNumeric(it.t) {
			out = append(out, Entry{Param: code, Type: TypeQuantity, Number: n})
		}
		return out
	}
	add := func(q map[string]any) {
		n, ok := q["value"].(float64)
		if !ok {
			return
		}
		out = append(out, Entry{Param: code, Type: TypeQuantity, Number: n,
			System: capString(jsonStr(q, "system")), Code: capString(jsonStr(q, "code")), Unit: capString(jsonStr(q, "unit"))})
	}
	switch {
	case it.t == "Money":
		if n, ok := v["value"].(float64); ok {
			cur := capString(jsonStr(v, "currency"))
			sys := ""
			if cur != "" {
				sys = systemISO4217
			}
			out = append(out, Entry{Param: code, Type: TypeQuantity, Number: n, System: sys, Code: cur, Unit: cur})
		}
	case it.t == "Range":
		// A range is indexed as its two ends (docs/search-index.md).
		jsonObjs(v, "low", add)
		jsonObjs(v, "high", add)
	case isType(it.t, "Quantity"):
		add(v)
	}
	return out
}

// stringPrimitives are the primitive types whose JSON value is a string.
var stringPrimitives = map[string]bool{"base64Binary": true, "canonical": true, "code": true, "date": true, "dateTime": true,
	"id": true, "instant": true, "markdown": true, "oid": true, "string": true, "time": true, "uri": true, "url": true,
	"uuid": true, "xhtml": true}

// numeric reports whether t is a FHIR number type.
func isNumeric(t string) bool { return t == "decimal" || isType(t, "integer") }

// extractable reports whether a value of FHIR type t yields entries for a parameter of type typ
// (it mirrors appendValues; the coverage test uses it to find expressions that index nothing).
func extractable(typ Type, t string) bool {
	switch typ {
	case TypeString:
		return stringPrimitives[t] || stringParts[t] != nil
	case TypeToken:
		return stringPrimitives[t] || t == "boolean" || isType(t, "integer") || t == "decimal" ||
			t == "Coding" || t == "CodeableConcept" || t == "Identifier" || t == "ContactPoint"
	case TypeReference:
		return stringPrimitives[t] || t == "Reference" || t == "ResourceList" || fhir.IsResourceType(t) || t == anyType
	case TypeDate:
		return t == "date" || t == "dateTime" || t == "instant" || t == "Period" || t == "Timing"
	case TypeNumber:
		return t == "decimal" || isType(t, "integer") || t == "Range" || isType(t, "Quantity")
	case TypeQuantity:
		return t == "decimal" || isType(t, "integer") || t == "Money" || t == "Range" || isType(t, "Quantity")
	case TypeURI:
		return stringPrimitives[t]
	}
	return false
}
