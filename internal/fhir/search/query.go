package search

import "github.com/fhirgate/fhirgate/internal/fhir"

// Query is a parsed FHIR search over one or more resource types. The FHIR API builds it from the
// request (Parse), the policy engine narrows it by appending clauses, and a backend compiles it to
// its own query language. Clauses are ANDed; the values inside a clause are ORed.
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
}

// CompartmentRef names one compartment instance.
type CompartmentRef struct {
	Type string // Patient
	ID   string
}

// Clause is one search parameter occurrence; its values are ORed.
type Clause struct {
	// Param is the definition of the parameter searched.
	Param *Param
	// Modifier is the text after ':' (exact, contains, missing, not, text, ...), if any.
	Modifier string
	// Values are ORed.
	Values []Value
}

// Value is one comparison of a clause.
type Value struct {
	// Prefix is the comparator of ordered types (eq, ne, gt, lt, ge, le, sa, eb, ap).
	Prefix string
	// Raw is the value as written in the request, unescaped.
	Raw string
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
