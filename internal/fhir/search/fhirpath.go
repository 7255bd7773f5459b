package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
	"github.com/fhirgate/fhirgate/internal/fhir/fhirjson"
)

// This file is the small FHIRPath subset that search extraction runs: enough for the official R4
// search parameter expressions (docs/search-index.md lists what it covers). Expressions are
// parsed once into a tree, type-checked against the element model of the R4 JSON schema, and
// evaluated over decoded JSON (map[string]any, []any, string, float64, bool).
//
// Supported: paths (arrays flatten; a choice element without a cast, Observation.effective,
// selects every effective[x] variant present), '|', 'and', 'or', '=', '!=', 'is', 'as',
// indexers ([0]), string/number/boolean literals, %resource, $this, and the functions where(),
// exists(), empty(), not(), first(), last(), as(), ofType(), is() and resolve(). resolve()
// does not fetch anything: it yields a typed stand-in for the referenced resource, so that
// `.where(resolve() is Patient)` keeps the references whose target type is Patient.

// ErrFHIRPath is wrapped by every error of parsing or checking a FHIRPath expression.
var ErrFHIRPath = errors.New("fhirpath")

func pathErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFHIRPath}, args...)...)
}

// ---- element model -------------------------------------------------------------------------

// elemProp is one JSON property an element name stands for: the name itself, or each variant of
// a choice element (value -> valueQuantity, valueString, ...).
type elemProp struct {
	key  string // JSON property name
	typ  string // FHIR type name (dateTime, CodeableConcept, Observation_Component, ResourceList)
	many bool
}

// typeModel maps a type name (resource, datatype or backbone element such as
// Observation_Component) to its element names.
type typeModel struct {
	types map[string]map[string][]elemProp
	// names holds every property name of the schema, shared by decoded bodies.
	names map[string]string
}

var (
	modelOnce sync.Once
	model     *typeModel
	modelErr  error
)

// elementModel loads the element model from the embedded R4 JSON schema once.
func elementModel() (*typeModel, error) {
	modelOnce.Do(func() { model, modelErr = loadModel(definitions.JSONSchema) })
	return model, modelErr
}

type schemaProp struct {
	Ref   string          `json:"$ref"`
	Type  string          `json:"type"`
	Enum  json.RawMessage `json:"enum"`
	Const json.RawMessage `json:"const"`
	Items *schemaProp     `json:"items"`
}

// primitiveNames maps the capitalised suffix of a choice variant to its primitive type.
var primitiveNames = map[string]string{}

func init() {
	for _, p := range []string{"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
		"instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid", "xhtml"} {
		primitiveNames[strings.ToUpper(p[:1])+p[1:]] = p
	}
}

func loadModel(schema []byte) (*typeModel, error) {
	var doc struct {
		Definitions map[string]struct {
			Properties map[string]schemaProp `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(schema, &doc); err != nil {
		return nil, fmt.Errorf("search: element model: %w", err)
	}
	m := &typeModel{types: make(map[string]map[string][]elemProp, len(doc.Definitions)), names: map[string]string{}}
	for name, def := range doc.Definitions {
		if len(def.Properties) == 0 {
			continue
		}
		props := make(map[string][]elemProp, len(def.Properties))
		for key, p := range def.Properties {
			m.names[key] = key
			if key == "" || key[0] == '_' || p.Const != nil {
				continue
			}
			many := false
			if p.Items != nil {
				many = true
				p = *p.Items
			}
			typ := ""
			switch {
			case p.Ref != "":
				typ = strings.TrimPrefix(p.Ref, "#/definitions/")
			case p.Enum != nil:
				typ = "code"
			}
			// A choice variant: key = base + Type, with base not an element of its own.
			base, variant := choiceBase(key, typ)
			if typ == "" {
				typ = variant
			}
			if typ == "" {
				continue
			}
			ep := elemProp{key: key, typ: typ, many: many}
			props[key] = append(props[key], ep)
			if base != "" {
				if _, own := def.Properties[base]; !own {
					props[base] = append(props[base], ep)
				}
			}
		}
		m.types[name] = props
	}
	if len(m.types["Observation"]) == 0 {
		return nil, fmt.Errorf("search: element model: no Observation in the schema")
	}
	return m, nil
}

// choiceBase splits a choice variant name (valueQuantity) into its base (value) and type
// (Quantity). ref is the schema type of the property, "" when the schema inlines it.
func choiceBase(key, ref string) (base, typ string) {
	for i := 1; i < len(key); i++ {
		if key[i] < 'A' || key[i] > 'Z' {
			continue
		}
		suffix := key[i:]
		switch {
		case ref != "" && (suffix == ref || primitiveNames[suffix] == ref):
			return key[:i], ref
		case ref == "" && primitiveNames[suffix] != "":
			return key[:i], primitiveNames[suffix]
		}
	}
	return "", ""
}

// lookup returns what element name of type typ stands for.
func (m *typeModel) lookup(typ, name string) []elemProp {
	return m.types[typ][name]
}

// hasType reports whether typ is a type the model knows (or a primitive).
func (m *typeModel) hasType(typ string) bool {
	if _, ok := m.types[typ]; ok {
		return true
	}
	_, ok := primitiveNames[strings.ToUpper(typ[:1])+typ[1:]]
	return ok && primitiveNames[strings.ToUpper(typ[:1])+typ[1:]] == typ
}

// canonicalType resolves a type specifier (FHIR.Quantity, DateTime, dateTime) to a type name
// of the model.
func (m *typeModel) canonicalType(spec string) (string, bool) {
	spec = strings.TrimPrefix(strings.TrimPrefix(spec, "FHIR."), "System.")
	if spec == "" {
		return "", false
	}
	if fhir.IsResourceType(spec) || spec == "Resource" || spec == "DomainResource" {
		return spec, true
	}
	if p, ok := primitiveNames[strings.ToUpper(spec[:1])+spec[1:]]; ok {
		return p, true // DateTime and dateTime both mean dateTime
	}
	if m.hasType(spec) {
		return spec, true
	}
	return "", false
}

// subtypes lists the types a type specifier also matches (FHIRPath is/as accept subtypes).
var subtypes = map[string][]string{
	"Quantity": {"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"},
	"string":   {"code", "id", "markdown"},
	"uri":      {"url", "canonical", "oid", "uuid"},
	"integer":  {"positiveInt", "unsignedInt"},
}

// isType reports whether a value of type have matches the type specifier want.
func isType(have, want string) bool {
	if have == want {
		return true
	}
	if want == "Resource" || want == "DomainResource" {
		return fhir.IsResourceType(have)
	}
	for _, s := range subtypes[want] {
		if s == have {
			return true
		}
	}
	return false
}

// ---- values ----------------------------------------------------------------------------------

// pathItem is one value of a FHIRPath collection: decoded JSON and its FHIR type.
type pathItem struct {
	v any
	t string
}

// resolvedRef stands for the resource a Reference points to (resolve()): only its type is known.
type resolvedRef struct{}

// ---- syntax ----------------------------------------------------------------------------------

type exprKind uint8

const (
	kMember  exprKind = iota // name on the focus (or on target)
	kTypeRef                 // a leading type name: Observation.code
	kFunc                    // name(args) on the focus (or on target)
	kIndex                   // target[index]
	kBinary                  // left op right
	kTypeOp                  // left is/as type
	kLiteral
	kThis     // $this
	kResource // %resource
)

// expr is a node of a parsed FHIRPath expression.
type expr struct {
	kind   exprKind
	name   string // member, function, type name, operator
	target *expr  // the expression a member/function/index applies to; nil: the focus
	args   []*expr
	left   *expr
	right  *expr
	index  int
	lit    any
	spec   string // the canonical type name of a type test or cast, set by check
	// props caches what a member stands for on each input type check saw.
	props []typeProps
}

type typeProps struct {
	typ   string
	props []elemProp
}

type pathTokKind uint8

const (
	ptEOF pathTokKind = iota
	ptIdent
	ptString
	ptNumber
	ptSym
	ptVar // %name or $name
)

type pathToken struct {
	kind pathTokKind
	text string
	pos  int
}

func lexPath(s string) ([]pathToken, error) {
	var toks []pathToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != '\''; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					switch s[j] {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					default:
						b.WriteByte(s[j])
					}
					continue
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, pathErrorf("unterminated string at %d", i)
			}
			toks = append(toks, pathToken{ptString, b.String(), i})
			i = j + 1
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j <= 0 {
				return nil, pathErrorf("unterminated or empty identifier at %d", i)
			}
			toks = append(toks, pathToken{ptIdent, s[i+1 : i+1+j], i})
			i += j + 2
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' && j+1 < len(s) && s[j+1] >= '0' && s[j+1] <= '9') {
				j++
			}
			toks = append(toks, pathToken{ptNumber, s[i:j], i})
			i = j
		case c == '%' || c == '$':
			j := i + 1
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			toks = append(toks, pathToken{ptVar, s[i:j], i})
			i = j
		case isIdentByte(c):
			j := i
			for j < len(s) && isIdentByte(s[j]) {
				j++
			}
			toks = append(toks, pathToken{ptIdent, s[i:j], i})
			i = j
		case c == '!' && i+1 < len(s) && s[i+1] == '=':
			toks = append(toks, pathToken{ptSym, "!=", i})
			i += 2
		case strings.IndexByte(".()[],|=", c) >= 0:
			toks = append(toks, pathToken{ptSym, string(c), i})
			i++
		default:
			return nil, pathErrorf("unsupported character %q at %d", c, i)
		}
	}
	return append(toks, pathToken{ptEOF, "", len(s)}), nil
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

type pathParser struct {
	toks  []pathToken
	pos   int
	depth int
}

// parsePath parses a FHIRPath expression of the supported subset.
func parsePath(s string) (*expr, error) {
	toks, err := lexPath(s)
	if err != nil {
		return nil, err
	}
	p := &pathParser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != ptEOF {
		return nil, pathErrorf("unexpected %q at %d", t.text, t.pos)
	}
	return e, nil
}

func (p *pathParser) peek() pathToken { return p.toks[p.pos] }
func (p *pathParser) next() pathToken {
	t := p.toks[p.pos]
	if t.kind != ptEOF {
		p.pos++
	}
	return t
}

func (p *pathParser) isKeyword(words ...string) (string, bool) {
	t := p.peek()
	if t.kind != ptIdent {
		return "", false
	}
	for _, w := range words {
		if t.text == w {
			return w, true
		}
	}
	return "", false
}

func (p *pathParser) or() (*expr, error) {
	l, err := p.and()
	for err == nil {
		op, ok := p.isKeyword("or")
		if !ok {
			break
		}
		p.next()
		var r *expr
		if r, err = p.and(); err == nil {
			l = &expr{kind: kBinary, name: op, left: l, right: r}
		}
	}
	return l, err
}

func (p *pathParser) and() (*expr, error) {
	l, err := p.equality()
	for err == nil {
		if _, ok := p.isKeyword("and"); !ok {
			break
		}
		p.next()
		var r *expr
		if r, err = p.equality(); err == nil {
			l = &expr{kind: kBinary, name: "and", left: l, right: r}
		}
	}
	return l, err
}

func (p *pathParser) equality() (*expr, error) {
	l, err := p.union()
	for err == nil {
		t := p.peek()
		if t.kind != ptSym || (t.text != "=" && t.text != "!=") {
			break
		}
		p.next()
		var r *expr
		if r, err = p.union(); err == nil {
			l = &expr{kind: kBinary, name: t.text, left: l, right: r}
		}
	}
	return l, err
}

func (p *pathParser) union() (*expr, error) {
	l, err := p.typeOp()
	for err == nil {
		if t := p.peek(); t.kind != ptSym || t.text != "|" {
			break
		}
		p.next()
		var r *expr
		if r, err = p.typeOp(); err == nil {
			l = &expr{kind: kBinary, name: "|", left: l, right: r}
		}
	}
	return l, err
}

func (p *pathParser) typeOp() (*expr, error) {
	l, err := p.postfix()
	for err == nil {
		op, ok := p.isKeyword("is", "as")
		if !ok {
			break
		}
		p.next()
		var spec string
		if spec, err = p.typeSpec(); err == nil {
			l = &expr{kind: kTypeOp, name: op, left: l, right: &expr{kind: kLiteral, lit: spec}}
		}
	}
	return l, err
}

func (p *pathParser) typeSpec() (string, error) {
	t := p.next()
	if t.kind != ptIdent {
		return "", pathErrorf("expected a type name at %d", t.pos)
	}
	spec := t.text
	for p.peek().kind == ptSym && p.peek().text == "." && p.toks[p.pos+1].kind == ptIdent {
		p.next()
		spec += "." + p.next().text
	}
	return spec, nil
}

func (p *pathParser) postfix() (*expr, error) {
	e, err := p.term()
	for err == nil {
		t := p.peek()
		if t.kind != ptSym {
			break
		}
		switch t.text {
		case ".":
			p.next()
			var inv *expr
			if inv, err = p.invocation(); err == nil {
				inv.target = e
				e = inv
			}
		case "[":
			p.next()
			n := p.next()
			if n.kind != ptNumber {
				return nil, pathErrorf("expected an index at %d", n.pos)
			}
			idx, perr := strconv.Atoi(n.text)
			if perr != nil {
				return nil, pathErrorf("bad index %q", n.text)
			}
			if c := p.next(); c.kind != ptSym || c.text != "]" {
				return nil, pathErrorf("expected ] at %d", c.pos)
			}
			e = &expr{kind: kIndex, target: e, index: idx}
		default:
			return e, nil
		}
	}
	return e, err
}

// invocation is a member or a function call.
func (p *pathParser) invocation() (*expr, error) {
	t := p.next()
	if t.kind != ptIdent {
		return nil, pathErrorf("expected a name at %d", t.pos)
	}
	if n := p.peek(); n.kind == ptSym && n.text == "(" {
		return p.call(t.text)
	}
	return &expr{kind: kMember, name: t.text}, nil
}

func (p *pathParser) call(name string) (*expr, error) {
	p.next() // (
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 32 {
		return nil, pathErrorf("expression nested too deeply")
	}
	e := &expr{kind: kFunc, name: name}
	if t := p.peek(); t.kind == ptSym && t.text == ")" {
		p.next()
		return e, nil
	}
	for {
		if name == "as" || name == "ofType" || name == "is" {
			spec, err := p.typeSpec()
			if err != nil {
				return nil, err
			}
			e.args = append(e.args, &expr{kind: kLiteral, lit: spec})
		} else {
			a, err := p.or()
			if err != nil {
				return nil, err
			}
			e.args = append(e.args, a)
		}
		t := p.next()
		if t.kind == ptSym && t.text == ")" {
			return e, nil
		}
		if t.kind != ptSym || t.text != "," {
			return nil, pathErrorf("expected , or ) at %d", t.pos)
		}
	}
}

func (p *pathParser) term() (*expr, error) {
	t := p.next()
	switch t.kind {
	case ptString:
		return &expr{kind: kLiteral, lit: t.text}, nil
	case ptNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return nil, pathErrorf("bad number %q", t.text)
		}
		return &expr{kind: kLiteral, lit: f}, nil
	case ptVar:
		switch t.text {
		case "$this":
			return &expr{kind: kThis}, nil
		case "%resource", "%rootResource":
			return &expr{kind: kResource}, nil
		}
		return nil, pathErrorf("unsupported variable %s", t.text)
	case ptIdent:
		switch t.text {
		case "true", "false":
			return &expr{kind: kLiteral, lit: t.text == "true"}, nil
		}
		if n := p.peek(); n.kind == ptSym && n.text == "(" {
			return p.call(t.text)
		}
		if unicode.IsUpper(rune(t.text[0])) {
			return &expr{kind: kTypeRef, name: t.text}, nil
		}
		return &expr{kind: kMember, name: t.text}, nil
	case ptSym:
		if t.text == "(" {
			p.depth++
			defer func() { p.depth-- }()
			if p.depth > 32 {
				return nil, pathErrorf("expression nested too deeply")
			}
			e, err := p.or()
			if err != nil {
				return nil, err
			}
			if c := p.next(); c.kind != ptSym || c.text != ")" {
				return nil, pathErrorf("expected ) at %d", c.pos)
			}
			return e, nil
		}
	}
	if t.kind == ptEOF {
		return nil, pathErrorf("unexpected end of expression")
	}
	return nil, pathErrorf("unexpected %q at %d", t.text, t.pos)
}

// ---- checking --------------------------------------------------------------------------------

// typeSet is the static type of an expression: the FHIR types its items may have. The marker
// "*" stands for any type (a resource in Bundle.entry.resource).
type typeSet map[string]bool

const anyType = "*"

// check type-checks e against the focus types and returns the types it may yield. It rejects
// unknown elements, functions and type names, so that a misspelt expression fails at startup
// instead of silently indexing nothing.
func (m *typeModel) check(e *expr, focus, resource typeSet) (typeSet, error) {
	in := focus
	if e.target != nil {
		var err error
		if in, err = m.check(e.target, focus, resource); err != nil {
			return nil, err
		}
	}
	switch e.kind {
	case kThis:
		return focus, nil
	case kResource:
		return resource, nil
	case kLiteral:
		switch e.lit.(type) {
		case string:
			return typeSet{"string": true}, nil
		case bool:
			return typeSet{"boolean": true}, nil
		}
		return typeSet{"decimal": true}, nil
	case kTypeRef:
		spec, ok := m.canonicalType(e.name)
		if !ok {
			return nil, pathErrorf("unknown type %s", e.name)
		}
		e.spec = spec
		out := typeSet{}
		for t := range in {
			if t == anyType || isType(t, spec) {
				out[t] = true
			}
		}
		if len(out) == 0 {
			return nil, pathErrorf("%s never matches the focus", e.name)
		}
		return out, nil
	case kMember:
		out := typeSet{}
		for t := range in {
			if t == anyType || t == "ResourceList" {
				out[anyType] = true
				continue
			}
			props := m.lookup(t, e.name)
			if !slices.ContainsFunc(e.props, func(tp typeProps) bool { return tp.typ == t }) {
				e.props = append(e.props, typeProps{t, props})
			}
			for _, p := range props {
				out[p.typ] = true
			}
		}
		if len(out) == 0 {
			return nil, pathErrorf("no element %s on %s", e.name, in.names())
		}
		return out, nil
	case kIndex:
		return in, nil
	case kTypeOp:
		l, err := m.check(e.left, focus, resource)
		if err != nil {
			return nil, err
		}
		out, spec, err := m.checkCast(e.name, e.right.lit.(string), l)
		e.spec = spec
		return out, err
	case kBinary:
		l, err := m.check(e.left, focus, resource)
		if err != nil {
			return nil, err
		}
		r, err := m.check(e.right, focus, resource)
		if err != nil {
			return nil, err
		}
		if e.name == "|" {
			out := typeSet{}
			for t := range l {
				out[t] = true
			}
			for t := range r {
				out[t] = true
			}
			return out, nil
		}
		return typeSet{"boolean": true}, nil
	case kFunc:
		switch e.name {
		case "where", "exists":
			if len(e.args) > 1 || (e.name == "where" && len(e.args) != 1) {
				return nil, pathErrorf("%s() takes one argument", e.name)
			}
			for _, a := range e.args {
				if _, err := m.check(a, in, resource); err != nil {
					return nil, err
				}
			}
			if e.name == "exists" {
				return typeSet{"boolean": true}, nil
			}
			return in, nil
		case "empty", "not":
			if len(e.args) != 0 {
				return nil, pathErrorf("%s() takes no argument", e.name)
			}
			return typeSet{"boolean": true}, nil
		case "first", "last":
			if len(e.args) != 0 {
				return nil, pathErrorf("%s() takes no argument", e.name)
			}
			return in, nil
		case "as", "ofType", "is":
			if len(e.args) != 1 {
				return nil, pathErrorf("%s() takes a type", e.name)
			}
			op := "as"
			if e.name == "is" {
				op = "is"
			}
			out, spec, err := m.checkCast(op, e.args[0].lit.(string), in)
			e.spec = spec
			return out, err
		case "resolve":
			if len(e.args) != 0 {
				return nil, pathErrorf("resolve() takes no argument")
			}
			if !in["Reference"] && !in["canonical"] && !in[anyType] {
				return nil, pathErrorf("resolve() on %s", in.names())
			}
			return typeSet{anyType: true}, nil
		}
		return nil, pathErrorf("unsupported function %s()", e.name)
	}
	return nil, pathErrorf("unsupported expression")
}

func (m *typeModel) checkCast(op, specName string, in typeSet) (typeSet, string, error) {
	spec, ok := m.canonicalType(specName)
	if !ok {
		return nil, "", pathErrorf("unknown type %s", specName)
	}
	if op == "is" {
		return typeSet{"boolean": true}, spec, nil
	}
	out := typeSet{}
	for t := range in {
		if t == anyType || isType(t, spec) {
			out[t] = true
		}
	}
	if len(out) == 0 {
		return nil, "", pathErrorf("%s is never a %s", in.names(), spec)
	}
	return out, spec, nil
}

func (s typeSet) names() string {
	var out []string
	for t := range s {
		out = append(out, t)
	}
	return strings.Join(out, ",")
}

// ---- evaluation ------------------------------------------------------------------------------

// evaluator runs expressions over one decoded resource. Collections are carved out of buf, one
// growing buffer, instead of being allocated one by one; each is capped (s[i:j:j]) so that an
// append to it copies instead of writing over its neighbour.
type evaluator struct {
	m        *typeModel
	resource pathItem
	buf      []pathItem
	// firsts and seconds are the entryScratch entries of composite parameters.
	firsts, seconds []Entry
}

var evaluators = sync.Pool{New: func() any { return &evaluator{buf: make([]pathItem, 0, 256)} }}

// newEvaluator returns a pooled evaluator over resource; release it with done.
func newEvaluator(m *typeModel, resource pathItem) *evaluator {
	ev := evaluators.Get().(*evaluator)
	ev.m, ev.resource = m, resource
	return ev
}

// done clears the evaluator (it must not keep the resource alive) and returns it to the pool.
func (ev *evaluator) done() {
	clear(ev.buf)
	ev.buf = ev.buf[:0]
	ev.resource = pathItem{}
	if cap(ev.buf) <= 1<<14 {
		evaluators.Put(ev)
	}
}

// seal returns the items appended to buf since start as one collection.
func (ev *evaluator) seal(start int) []pathItem {
	n := len(ev.buf)
	if n == start {
		return nil
	}
	return ev.buf[start:n:n]
}

// one returns a collection of one item.
func (ev *evaluator) one(it pathItem) []pathItem {
	ev.buf = append(ev.buf, it)
	return ev.seal(len(ev.buf) - 1)
}

func (ev *evaluator) boolean(b bool) []pathItem { return ev.one(pathItem{v: b, t: "boolean"}) }

// eval evaluates e with the focus collection.
func (ev *evaluator) eval(e *expr, focus []pathItem) []pathItem {
	in := focus
	if e.target != nil {
		in = ev.eval(e.target, focus)
	}
	switch e.kind {
	case kThis:
		return focus
	case kResource:
		return ev.one(ev.resource)
	case kLiteral:
		return ev.one(pathItem{v: e.lit})
	case kTypeRef:
		return ev.filterType(in, e.spec)
	case kMember:
		return ev.member(in, e)
	case kIndex:
		if e.index < len(in) {
			return in[e.index : e.index+1]
		}
		return nil
	case kTypeOp:
		return ev.cast(e.name, e.spec, ev.eval(e.left, focus))
	case kBinary:
		return ev.binary(e, focus)
	case kFunc:
		return ev.call(e, in)
	}
	return nil
}

// member selects the element name of every item; arrays flatten, and a choice element yields
// each variant present with its type.
func (ev *evaluator) member(in []pathItem, e *expr) []pathItem {
	start := len(ev.buf)
	for _, it := range in {
		obj, ok := it.v.(map[string]any)
		if !ok {
			continue
		}
		t := it.t
		if t == "ResourceList" || t == anyType {
			rt, _ := obj["resourceType"].(string)
			if !fhir.IsResourceType(rt) {
				continue
			}
			t = rt
		}
		for _, p := range e.propsOf(ev.m, t) {
			v, ok := obj[p.key]
			if !ok || v == nil {
				continue
			}
			if arr, ok := v.([]any); ok {
				for _, x := range arr {
					if x != nil {
						ev.buf = append(ev.buf, ev.typed(x, p.typ))
					}
				}
				continue
			}
			ev.buf = append(ev.buf, ev.typed(v, p.typ))
		}
	}
	return ev.seal(start)
}

// propsOf is what member e stands for on type t.
func (e *expr) propsOf(m *typeModel, t string) []elemProp {
	for i := range e.props {
		if e.props[i].typ == t {
			return e.props[i].props
		}
	}
	return m.lookup(t, e.name)
}

// typed makes an pathItem, resolving a contained resource to its own type.
func (ev *evaluator) typed(v any, t string) pathItem {
	if t == "ResourceList" {
		if obj, ok := v.(map[string]any); ok {
			if rt, _ := obj["resourceType"].(string); fhir.IsResourceType(rt) {
				t = rt
			}
		}
	}
	return pathItem{v: v, t: t}
}

// cast applies is or as; spec is a canonical type name (set by check).
func (ev *evaluator) cast(op, spec string, in []pathItem) []pathItem {
	if op == "is" {
		if len(in) != 1 {
			return nil
		}
		return ev.boolean(isType(in[0].t, spec))
	}
	return ev.filterType(in, spec)
}

// filterType keeps the items of type spec (in itself when they all are).
func (ev *evaluator) filterType(in []pathItem, spec string) []pathItem {
	n := 0
	for _, it := range in {
		if isType(it.t, spec) {
			n++
		}
	}
	if n == len(in) {
		return in
	}
	start := len(ev.buf)
	for _, it := range in {
		if isType(it.t, spec) {
			ev.buf = append(ev.buf, it)
		}
	}
	return ev.seal(start)
}

func (ev *evaluator) call(e *expr, in []pathItem) []pathItem {
	switch e.name {
	case "where":
		if len(e.args) != 1 {
			return nil
		}
		return ev.where(e.args[0], in)
	case "exists":
		if len(e.args) == 1 {
			in = ev.where(e.args[0], in)
		}
		return ev.boolean(len(in) > 0)
	case "empty":
		return ev.boolean(len(in) == 0)
	case "not":
		if len(in) != 1 {
			return nil
		}
		b, ok := in[0].v.(bool)
		if !ok {
			return nil
		}
		return ev.boolean(!b)
	case "first":
		if len(in) > 0 {
			return in[:1]
		}
		return nil
	case "last":
		if len(in) > 0 {
			return in[len(in)-1:]
		}
		return nil
	case "as", "ofType":
		return ev.cast("as", e.spec, in)
	case "is":
		return ev.cast("is", e.spec, in)
	case "resolve":
		start := len(ev.buf)
		for _, it := range in {
			var ref string
			switch v := it.v.(type) {
			case map[string]any:
				ref, _ = v["reference"].(string)
			case string:
				ref = v
			}
			if typ, _, _ := splitReference(ref); typ != "" {
				ev.buf = append(ev.buf, pathItem{v: resolvedRef{}, t: typ})
			}
		}
		return ev.seal(start)
	}
	return nil
}

// where keeps the items for which crit is true.
func (ev *evaluator) where(crit *expr, in []pathItem) []pathItem {
	var small [32]bool
	keep := small[:0]
	if len(in) > len(small) {
		keep = make([]bool, 0, len(in))
	}
	for _, it := range in {
		keep = append(keep, truthy(ev.eval(crit, ev.one(it))))
	}
	start := len(ev.buf)
	for i, it := range in {
		if keep[i] {
			ev.buf = append(ev.buf, it)
		}
	}
	return ev.seal(start)
}

func (ev *evaluator) binary(e *expr, focus []pathItem) []pathItem {
	l := ev.eval(e.left, focus)
	switch e.name {
	case "|":
		r := ev.eval(e.right, focus)
		if len(l) == 0 {
			return r
		}
		if len(r) == 0 {
			return l
		}
		start := len(ev.buf)
		ev.buf = append(ev.buf, l...)
		ev.buf = append(ev.buf, r...)
		return ev.seal(start)
	case "and", "or":
		lb, lok := boolOf(l)
		if lok && (e.name == "and" && !lb || e.name == "or" && lb) {
			return ev.boolean(lb)
		}
		rb, rok := boolOf(ev.eval(e.right, focus))
		switch {
		case rok && (e.name == "and" && !rb || e.name == "or" && rb):
			return ev.boolean(rb)
		case lok && rok:
			return ev.boolean(lb)
		}
		return nil
	case "=", "!=":
		r := ev.eval(e.right, focus)
		if len(l) != 1 || len(r) != 1 {
			return nil
		}
		eq := primitiveEqual(l[0].v, r[0].v)
		return ev.boolean(eq == (e.name == "="))
	}
	return nil
}

func boolOf(c []pathItem) (bool, bool) {
	if len(c) != 1 {
		return false, false
	}
	b, ok := c[0].v.(bool)
	return b, ok
}

// truthy is the FHIRPath test of a where() criterion: a single true.
func truthy(c []pathItem) bool {
	b, ok := boolOf(c)
	return ok && b
}

func primitiveEqual(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	}
	return false
}

// ---- input -----------------------------------------------------------------------------------

// maxJSONDepth bounds the nesting of objects and arrays in a decoded body, far above what any
// R4 resource needs.
const maxJSONDepth = 256

// decodeJSON decodes a JSON document into map[string]any, []any, string, float64, bool and nil,
// as encoding/json does into an any (duplicate names: the last wins; invalid UTF-8 becomes
// U+FFFD; numbers out of float64 range are errors), with fhirjson's lenient mode: property names
// the element model knows are shared, not allocated.
func (m *typeModel) decodeJSON(data []byte) (any, error) {
	return fhirjson.Decode(data, fhirjson.Options{Names: m.names, MaxDepth: maxJSONDepth})
}
