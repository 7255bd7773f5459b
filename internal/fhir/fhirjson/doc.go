// Package fhirjson owns the one hand-written JSON decoder that fhirgate uses to read FHIR
// resource bodies into map[string]any, []any, string, number, bool and nil values.
//
// Decode reads in two modes. Strict (the validator's) refuses what encoding/json would silently
// repair or resolve: a name repeated within one object, invalid UTF-8 and unpaired UTF-16
// surrogate escapes. The lenient mode (search extraction's) reads documents as encoding/json
// does into an any: the last duplicate wins and invalid UTF-8 becomes U+FFFD. Both modes check
// the full JSON grammar, bound the nesting depth, and can take property names from an interning
// table instead of allocating them; numbers are json.Number or float64.
package fhirjson
