package search

import "github.com/fhirgate/fhirgate/internal/fhir"

// Query is a parsed FHIR search over one or more resource types. The FHIR API builds it from the
// request (Parse), the policy engine narrows it by appending clauses, and a backend compiles it to
// its own query language. Clauses are ANDed; the values inside a clause are ORed.
//
// Build clauses with Parse or ParseClause: a backend compiles the typed fields of each Value
// (System, Code, Low, High, Number, ...), not Raw, so a hand-made Value with only Raw set matches
// nothing.
type Query struct {
	// Types are the resource types searched: one for a type search, several for _type.
	Types []string
	// Compartment restricts the search to one compartment (Patient/123/Observation).
	Compartment *CompartmentRef
	// Clauses are ANDed.
	Clauses []Clause
	// Count is the page size; 0 means the server default.
	Count int
	// Cursor continues a previous search from where its page ended (opaque to everything but the
	// backend that made it).
	Cursor string

	// Sort orders the matches (_sort); the backend breaks ties by its own stable key.
	Sort []SortKey
	// Includes and RevIncludes add referenced and referring resources (_include, _revinclude).
	Includes    []Include
	RevIncludes []Include
	// Summary is the _summary mode: "", "true", "text", "data", "count" or "false". Only
	// "count" concerns a backend (it returns Total and no resources); the FHIR API applies the
	// others to the resources it writes.
	Summary string
	// Elements is the _elements list, applied by the FHIR API.
	Elements []string
	// Total is the _total mode: "" (the backend's default), "none", "estimate" or "accurate".
	Total string
	// LocalBase is the server's FHIR base with a trailing '/' (ParseOptions.BaseURL): _include
	// follows an indexed absolute reference only when it starts with it. Empty: every
	// reference indexed with a Type/id is followed.
	LocalBase string
}

// The _total modes.
const (
	TotalNone     = "none"
	TotalEstimate = "estimate"
	TotalAccurate = "accurate"
)

// SummaryCount is the _summary mode that asks only for the number of matches.
const SummaryCount = "count"

// CompartmentRef names one compartment instance.
type CompartmentRef struct {
	Type string // Patient
	ID   string
}

// Clause is one search parameter occurrence; its values are ORed.
//
// A clause is one of three shapes:
//   - a plain test of Param against Values (with Modifier);
//   - a chain (Chain set): Param is a reference parameter, and the clause holds when a resource it
//     references matches Chain.Clause (subject:Patient.name=x);
//   - a reverse chain (Reverse set, Param nil): the clause holds when some resource of
//     Reverse.Type refers to this one through Reverse.Param and matches Reverse.Clause
//     (_has:Observation:patient:code=x).
type Clause struct {
	// Param is the definition of the parameter searched.
	Param *Param
	// Modifier is the text after ':' (exact, contains, missing, not, text, of-type, identifier,
	// below, above), if any. A chain's resource type is in Chain.Type, not here.
	Modifier string
	// Values are ORed.
	Values []Value
	// Chain, when set, makes this a chained clause.
	Chain *Chain
	// Reverse, when set, makes this a reverse-chained clause (_has).
	Reverse *Reverse
}

// Chain is the next link of a chained search.
type Chain struct {
	// Type is the resource type the reference must point to.
	Type string
	// Clause is evaluated on the referenced resource.
	Clause Clause
	// Filter are clauses ANDed on the referenced resource, so that a chain cannot probe
	// resources the caller may not see. Set by the access policy, never by the parser.
	Filter []Clause
}

// Reverse is a _has link.
type Reverse struct {
	// Type is the type of the referring resources.
	Type string
	// Param is the reference parameter of Type that points back at the searched resource.
	Param *Param
	// Clause is evaluated on the referring resource.
	Clause Clause
	// Filter are clauses ANDed on the referring resource, so that a _has cannot probe
	// resources the caller may not see. Set by the access policy, never by the parser.
	Filter []Clause
}

// Value is one comparison of a clause. Which typed fields are set depends on the parameter type
// (see the field comments; Parse and ParseClause set them).
type Value struct {
	// Prefix is the comparator of ordered types (eq, ne, gt, lt, ge, le, sa, eb, ap); Parse sets
	// eq when the request has none. Empty for the other types.
	Prefix string
	// Raw is the value as written in the request, unescaped.
	Raw string

	// Missing is the boolean of a :missing clause (true: the parameter has no value).
	Missing bool

	// Text is the normalised (lower case, accent-free) string of a string search or a token
	// :text search; :exact string searches compare Raw.
	Text string

	// System and Code are a token (system|code), the unit of a quantity, the identifier type of
	// a token :of-type search, or the system|value of a reference :identifier search.
	System string
	Code   string
	// HasSystem is true when the value had a '|': System is then compared, and an empty System
	// means "no system". Without it any system matches. For a quantity, HasSystem false with a
	// Code means value||unit (Code matches the unit code or the unit as written).
	HasSystem bool
	// Identifier is the identifier value of a token :of-type search (system|code|value).
	Identifier string

	// RefType and RefID are a reference to a resource on this server (RefType may be empty for a
	// bare id); RefURL is any other absolute or canonical reference.
	RefType, RefID, RefURL string
	// LocalBase is the server's FHIR base with a trailing '/' (ParseOptions.BaseURL), set on
	// reference values: an indexed absolute reference is to a local resource only when it
	// starts with it.
	LocalBase string

	// Low and High are the inclusive range of a date value in unix microseconds UTC, from its
	// precision (2013-01 is [2013-01-01T00:00:00, 2013-01-31T23:59:59.999999]).
	Low, High int64

	// Number is a number or quantity value; [NumLow, NumHigh) is the range its precision implies
	// (100 is [99.5, 100.5), 1e2 is [50, 150)).
	Number, NumLow, NumHigh float64

	// Components are the parts of a composite value, in the order of Param.Components.
	Components []Value
}

// SortKey is one _sort key.
type SortKey struct {
	// Param is the parameter sorted on (_id and _lastUpdated included).
	Param *Param
	// Desc is true for a '-' key.
	Desc bool
}

// Include is one _include or _revinclude.
type Include struct {
	// Type is the resource type that holds the reference ("" for _include=*: any type).
	Type string
	// Param is the reference parameter of Type; nil means every reference parameter (Type:*).
	Param *Param
	// Target restricts the referenced type (_include=Observation:subject:Patient).
	Target string
	// Iterate repeats the include on the resources included (:iterate, or R4's :recurse).
	Iterate bool
}

// Result is one page of a search.
type Result struct {
	// Matches are the resources that matched, in order.
	Matches []*fhir.Resource
	// Included are the resources added by _include / _revinclude.
	Included []*fhir.Resource
	// Total is the number of matches over every page, when it was counted.
	Total *int
	// Next is the cursor of the next page, empty on the last page.
	Next string
}
