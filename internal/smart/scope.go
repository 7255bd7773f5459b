package smart

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// Kind says what a scope grants.
type Kind uint8

// The scope kinds fhirgate understands. Anything else is not a scope (ParseScope fails).
const (
	// KindResource is a clinical scope: {patient|user|system}/{Type|*}.{perms}[?constraints].
	KindResource Kind = iota + 1
	KindOpenID
	KindFHIRUser
	KindProfile
	KindLaunch
	KindLaunchPatient
	KindLaunchEncounter
	KindOfflineAccess
	KindOnlineAccess
)

// simpleScopes are the scopes that are a fixed word.
var simpleScopes = map[string]Kind{
	"openid":           KindOpenID,
	"fhirUser":         KindFHIRUser,
	"profile":          KindProfile,
	"launch":           KindLaunch,
	"launch/patient":   KindLaunchPatient,
	"launch/encounter": KindLaunchEncounter,
	"offline_access":   KindOfflineAccess,
	"online_access":    KindOnlineAccess,
}

var kindNames = map[Kind]string{
	KindResource:        "resource",
	KindOpenID:          "openid",
	KindFHIRUser:        "fhirUser",
	KindProfile:         "profile",
	KindLaunch:          "launch",
	KindLaunchPatient:   "launch/patient",
	KindLaunchEncounter: "launch/encounter",
	KindOfflineAccess:   "offline_access",
	KindOnlineAccess:    "online_access",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Context is the first segment of a resource scope: whose data the scope reaches.
type Context uint8

// The three contexts of SMART resource scopes.
const (
	// ContextPatient limits access to the patient in the token's launch context.
	ContextPatient Context = iota + 1
	// ContextUser grants what the signed-in user (fhirUser) may see.
	ContextUser
	// ContextSystem is a backend service acting on its own behalf.
	ContextSystem
)

func (c Context) String() string {
	switch c {
	case ContextPatient:
		return "patient"
	case ContextUser:
		return "user"
	case ContextSystem:
		return "system"
	}
	return fmt.Sprintf("Context(%d)", uint8(c))
}

// Perms is a set of SMART v2 permissions.
type Perms uint8

// The SMART v2 permissions, in the order they must be written (c r u d s).
const (
	// PermCreate allows create.
	PermCreate Perms = 1 << iota
	// PermRead allows read, vread and instance history.
	PermRead
	// PermUpdate allows update and patch.
	PermUpdate
	// PermDelete allows delete.
	PermDelete
	// PermSearch allows type and system search and type and system history.
	PermSearch

	// PermsAll is "cruds" (v1 "*").
	PermsAll = PermCreate | PermRead | PermUpdate | PermDelete | PermSearch
	// PermsV1Read is what v1 "read" means in v2: "rs".
	PermsV1Read = PermRead | PermSearch
	// PermsV1Write is what v1 "write" means in v2: "cud".
	PermsV1Write = PermCreate | PermUpdate | PermDelete
)

const permLetters = "cruds"

// String writes the permissions as v2 letters in canonical order ("rs").
func (p Perms) String() string {
	var b [5]byte
	n := 0
	for i := range len(permLetters) {
		if p&(1<<i) != 0 {
			b[n] = permLetters[i]
			n++
		}
	}
	return string(b[:n])
}

// Has reports whether p includes every permission in q.
func (p Perms) Has(q Perms) bool { return p&q == q }

// Syntax records how a resource scope was written.
type Syntax uint8

// The two scope syntaxes.
const (
	// SyntaxV2 is SMART 2.x: letters from "cruds".
	SyntaxV2 Syntax = iota
	// SyntaxV1 is SMART 1.0: read, write or *.
	SyntaxV1
)

func (s Syntax) String() string {
	if s == SyntaxV1 {
		return "v1"
	}
	return "v2"
}

// AllTypes is the resource type wildcard of a resource scope.
const AllTypes = "*"

// Constraint is one param=value pair of a granular (v2) scope. A resource is within the scope
// only if it matches every constraint of the scope, as the equivalent search would.
type Constraint struct {
	// Param is the search parameter code (category, code, _tag, ...): never a modifier, chain,
	// or result parameter.
	Param string
	// Value is the percent-decoded value. Commas separate alternatives, as in a search
	// (category=a,b matches either).
	Value string
}

// Values splits Value at its commas: the alternatives, any one of which satisfies the constraint.
func (c Constraint) Values() []string { return strings.Split(c.Value, ",") }

// String writes param=value with the characters that cannot appear in a scope token escaped.
func (c Constraint) String() string { return c.Param + "=" + escapeValue(c.Value) }

// Scope is one parsed SMART scope. The zero Scope is not a valid scope.
type Scope struct {
	Kind Kind
	// The fields below are set for KindResource only.

	// Context is patient, user or system.
	Context Context
	// Type is an R4 resource type or AllTypes.
	Type string
	// Perms is never empty.
	Perms Perms
	// Constraints of a granular scope; empty for a resource-level scope.
	Constraints []Constraint
	// Syntax is how the scope was written; v1 scopes never have constraints.
	Syntax Syntax
}

// IsResource reports whether s is a resource scope.
func (s Scope) IsResource() bool { return s.Kind == KindResource }

// AppliesTo reports whether s is a resource scope for resource type typ (by name or wildcard).
func (s Scope) AppliesTo(typ string) bool {
	return s.Kind == KindResource && (s.Type == AllTypes || s.Type == typ)
}

// Granular reports whether s carries search constraints.
func (s Scope) Granular() bool { return len(s.Constraints) > 0 }

// String is the normalised v2 form: v1 permissions are written as v2 letters.
func (s Scope) String() string {
	if s.Kind != KindResource {
		return kindNames[s.Kind]
	}
	return s.format(s.Perms.String())
}

// Echo writes s in the syntax it was requested in: v1 when it was written in v1 and its
// permissions still have a v1 spelling (rs, cud, cruds), the v2 form otherwise. Token responses
// use it so that a v1 client gets v1 scopes back and a v2 client v2 scopes.
func (s Scope) Echo() string {
	if s.Kind != KindResource || s.Syntax != SyntaxV1 || len(s.Constraints) > 0 {
		return s.String()
	}
	switch s.Perms {
	case PermsV1Read:
		return s.format("read")
	case PermsV1Write:
		return s.format("write")
	case PermsAll:
		return s.format("*")
	}
	return s.String()
}

func (s Scope) format(perms string) string {
	var b strings.Builder
	b.WriteString(s.Context.String())
	b.WriteByte('/')
	b.WriteString(s.Type)
	b.WriteByte('.')
	b.WriteString(perms)
	for i, c := range s.Constraints {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(c.String())
	}
	return b.String()
}

// Equal reports whether s and o grant exactly the same (constraint order is ignored; syntax is
// not part of the meaning).
func (s Scope) Equal(o Scope) bool {
	if s.Kind != o.Kind {
		return false
	}
	if s.Kind != KindResource {
		return true
	}
	return s.Context == o.Context && s.Type == o.Type && s.Perms == o.Perms &&
		constraintsWithin(s.Constraints, o.Constraints) && constraintsWithin(o.Constraints, s.Constraints)
}

// ErrInvalidScope is wrapped by every ParseScope error.
var ErrInvalidScope = errors.New("invalid scope")

// maxScopeLen bounds one scope token. Real scopes are far shorter; the bound keeps a hostile
// request from making the parser (and every later comparison) work on megabytes.
const maxScopeLen = 2048

// maxConstraints bounds the param=value pairs of one granular scope.
const maxConstraints = 16

func invalid(s, format string, args ...any) error {
	return fmt.Errorf("smart: %w %q: %s", ErrInvalidScope, truncate(s), fmt.Sprintf(format, args...))
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// ParseScope parses one scope token completely. Anything that is not exactly one of the
// grammars below is an error: there are no partial matches.
//
//	openid | fhirUser | profile | launch | launch/patient | launch/encounter |
//	offline_access | online_access |
//	(patient|user|system) "/" (R4ResourceType|"*") "." (read|write|"*")            ; v1
//	(patient|user|system) "/" (R4ResourceType|"*") "." [c][r][u][d][s] ["?" q]     ; v2, non-empty
//	q = param "=" value *("&" param "=" value)
//
// In q, param is a plain search parameter name ([A-Za-z][A-Za-z0-9-]*, or one of _id, _tag,
// _security, _profile, _source, _lastUpdated): modifiers (":"), chains ("."), and result or
// control parameters (_include, _revinclude, _has, _filter, _type, _count, ...) are refused.
// Whether the parameter exists for the resource type is checked where scopes are enforced, with
// the search parameter registry (an unknown parameter then grants nothing). value is
// percent-decoded, must be non-empty, and may hold comma-separated alternatives.
func ParseScope(s string) (Scope, error) {
	if s == "" {
		return Scope{}, invalid(s, "empty")
	}
	if len(s) > maxScopeLen {
		return Scope{}, invalid(s, "longer than %d bytes", maxScopeLen)
	}
	// RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return Scope{}, invalid(s, "character %q at %d is not allowed in a scope", c, i)
		}
	}
	if k, ok := simpleScopes[s]; ok {
		return Scope{Kind: k}, nil
	}
	ctxText, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, invalid(s, "unknown scope")
	}
	sc := Scope{Kind: KindResource}
	switch ctxText {
	case "patient":
		sc.Context = ContextPatient
	case "user":
		sc.Context = ContextUser
	case "system":
		sc.Context = ContextSystem
	default:
		return Scope{}, invalid(s, "unknown scope")
	}
	head, query, hasQuery := strings.Cut(rest, "?")
	typ, perms, ok := strings.Cut(head, ".")
	if !ok {
		return Scope{}, invalid(s, "missing '.' between resource type and permissions")
	}
	if typ != AllTypes && !IsResourceType(typ) {
		return Scope{}, invalid(s, "%q is not an R4 resource type", typ)
	}
	sc.Type = typ
	switch perms {
	case "read":
		sc.Perms, sc.Syntax = PermsV1Read, SyntaxV1
	case "write":
		sc.Perms, sc.Syntax = PermsV1Write, SyntaxV1
	case "*":
		sc.Perms, sc.Syntax = PermsAll, SyntaxV1
	default:
		p, err := parsePerms(perms)
		if err != nil {
			return Scope{}, invalid(s, "%v", err)
		}
		sc.Perms, sc.Syntax = p, SyntaxV2
	}
	if hasQuery {
		if sc.Syntax == SyntaxV1 {
			return Scope{}, invalid(s, "v1 permissions cannot carry constraints")
		}
		cs, err := parseConstraints(query)
		if err != nil {
			return Scope{}, invalid(s, "%v", err)
		}
		sc.Constraints = cs
	}
	return sc, nil
}

// parsePerms reads a non-empty, in-order subset of "cruds".
func parsePerms(s string) (Perms, error) {
	if s == "" {
		return 0, errors.New("no permissions")
	}
	var p Perms
	next := 0 // index in permLetters the next letter may take
	for i := 0; i < len(s); i++ {
		j := strings.IndexByte(permLetters[next:], s[i])
		if j < 0 {
			return 0, fmt.Errorf("permissions %q are not an in-order subset of %q", s, permLetters)
		}
		p |= 1 << (next + j)
		next += j + 1
	}
	return p, nil
}

// allowedUnderscore are the common search parameters that may constrain a scope; every other
// name starting with '_' is a result or control parameter (or _has/_filter/_type) and is refused.
var allowedUnderscore = map[string]bool{
	"_id": true, "_tag": true, "_security": true, "_profile": true, "_source": true, "_lastUpdated": true,
}

func parseConstraints(q string) ([]Constraint, error) {
	if q == "" {
		return nil, errors.New("empty constraint after '?'")
	}
	parts := strings.Split(q, "&")
	if len(parts) > maxConstraints {
		return nil, fmt.Errorf("more than %d constraints", maxConstraints)
	}
	out := make([]Constraint, 0, len(parts))
	for _, part := range parts {
		name, raw, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("constraint %q is not param=value", part)
		}
		if err := checkParamName(name); err != nil {
			return nil, err
		}
		value, err := url.PathUnescape(raw)
		if err != nil {
			return nil, fmt.Errorf("constraint %q: bad percent-encoding", part)
		}
		if err := checkValue(value); err != nil {
			return nil, fmt.Errorf("constraint %q: %w", part, err)
		}
		c := Constraint{Param: name, Value: value}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func checkParamName(name string) error {
	if name == "" {
		return errors.New("empty parameter name")
	}
	if len(name) > 64 {
		return fmt.Errorf("parameter name %q is too long", truncate(name))
	}
	if name[0] == '_' {
		if !allowedUnderscore[name] {
			return fmt.Errorf("parameter %q may not constrain a scope", name)
		}
		return nil
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '-'):
		default:
			// ':' (modifier), '.' (chain) and anything else.
			return fmt.Errorf("parameter name %q is not a plain search parameter", name)
		}
	}
	return nil
}

func checkValue(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	if !utf8.ValidString(v) {
		return errors.New("value is not UTF-8")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("value holds %q", r)
		}
	}
	for _, alt := range strings.Split(v, ",") {
		if alt == "" {
			return errors.New("empty alternative in value")
		}
	}
	return nil
}

// escapeValue percent-encodes what may not appear raw in a scope token or would change how the
// value is split ('%', '&', space and everything outside printable ASCII).
func escapeValue(v string) string {
	need := false
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= 0x20 || c >= 0x7f || c == '%' || c == '&' || c == '"' || c == '\\' {
			need = true
			break
		}
	}
	if !need {
		return v
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c >= 0x7f || c == '%' || c == '&' || c == '"' || c == '\\' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// IsResourceType reports whether t is an R4 resource type.
func IsResourceType(t string) bool {
	_, ok := slices.BinarySearch(definitions.ResourceTypes, t)
	return ok
}

// Covers reports whether granted permits everything requested permits: same kind; for resource
// scopes the same context, a type that is the same or the wildcard, a superset of the
// permissions, and no constraint that requested does not also impose (at least as narrowly).
// It is the scope strategy of the authorization server: a request for requested is satisfied by
// a grant of granted. Contexts never cover each other (user/ does not cover patient/).
func Covers(granted, requested Scope) bool {
	if granted.Kind == 0 || granted.Kind != requested.Kind {
		return false
	}
	if granted.Kind != KindResource {
		return true
	}
	if granted.Context != requested.Context || requested.Perms == 0 || !granted.Perms.Has(requested.Perms) {
		return false
	}
	if granted.Type != AllTypes && granted.Type != requested.Type {
		return false
	}
	return constraintsWithin(granted.Constraints, requested.Constraints)
}

// constraintsWithin reports whether a resource that satisfies every constraint of narrow also
// satisfies every constraint of wide: each constraint of wide is implied by a constraint of
// narrow on the same parameter whose alternatives are a subset of its own.
func constraintsWithin(wide, narrow []Constraint) bool {
	for _, w := range wide {
		wv := w.Values()
		implied := false
		for _, n := range narrow {
			if n.Param != w.Param {
				continue
			}
			subset := true
			for _, v := range n.Values() {
				if !slices.Contains(wv, v) {
					subset = false
					break
				}
			}
			if subset {
				implied = true
				break
			}
		}
		if !implied {
			return false
		}
	}
	return true
}

// meet is the largest scope that both a and b permit, and whether there is one.
func meet(a, b Scope) (Scope, bool) {
	if a.Kind == 0 || a.Kind != b.Kind {
		return Scope{}, false
	}
	if a.Kind != KindResource {
		return a, true
	}
	if a.Context != b.Context {
		return Scope{}, false
	}
	m := Scope{Kind: KindResource, Context: a.Context, Syntax: a.Syntax}
	switch {
	case a.Type == b.Type, b.Type == AllTypes:
		m.Type = a.Type
	case a.Type == AllTypes:
		m.Type = b.Type
	default:
		return Scope{}, false
	}
	m.Perms = a.Perms & b.Perms
	if m.Perms == 0 {
		return Scope{}, false
	}
	// Both sets of constraints apply (AND).
	m.Constraints = slices.Clone(a.Constraints)
	for _, c := range b.Constraints {
		if !slices.Contains(m.Constraints, c) {
			m.Constraints = append(m.Constraints, c)
		}
	}
	if len(m.Constraints) == 0 {
		m.Constraints = nil
	}
	return m, true
}

// SplitReference splits a relative literal reference "Type/id" (as in the fhirUser claim) into
// its R4 resource type and id. It refuses absolute URLs, versioned references and bad ids.
func SplitReference(ref string) (typ, id string, ok bool) {
	typ, id, ok = strings.Cut(ref, "/")
	if !ok || !IsResourceType(typ) || !ValidID(id) {
		return "", "", false
	}
	return typ, id, true
}

// ValidID reports whether id is a FHIR id: 1 to 64 of A-Z a-z 0-9 '-' '.'.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
