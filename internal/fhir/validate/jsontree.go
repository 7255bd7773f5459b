package validate

import (
	"github.com/fhirgate/fhirgate/internal/fhir/fhirjson"
)

// maxDepth bounds the nesting of JSON objects and arrays. The deepest R4 resources (Questionnaire
// items, nested Bundles) stay far below it; the bound keeps every recursive walk small.
const maxDepth = 100

// errSyntax is the sentinel every decode failure wraps.
var errSyntax = fhirjson.ErrSyntax

// decodeStrict parses one JSON document into the value types the schema validator reads:
// map[string]any, []any, string, json.Number, bool and nil.
//
// It is stricter than encoding/json, on purpose: a name repeated within one object, invalid UTF-8
// and nesting deeper than maxDepth are errors. encoding/json keeps the last duplicate and
// replaces bad bytes with U+FFFD, so two parsers could read one body differently; a security
// gateway must not store a body that another reader could interpret another way.
func decodeStrict(data []byte) (any, error) { return decodeInterned(data, nil) }

// decodeInterned is decodeStrict that takes property names found in names from there instead of
// allocating them (names holds every property name of the R4 schema; it is only read).
func decodeInterned(data []byte, names map[string]string) (any, error) {
	return fhirjson.Decode(data, fhirjson.Options{Strict: true, UseNumber: true, Names: names, MaxDepth: maxDepth})
}
