// Package validate owns the validation of every FHIR resource fhirgate writes: the official R4
// JSON schema, compiled per resource type, plus the rules that schema cannot express (reference
// syntax, one type per choice element, calendar dates, integer ranges, contained resources), reading
// bodies with the strict mode of package fhirjson (duplicate names and invalid UTF-8 refused).
//
// Validate reports every failure as one OperationOutcome issue whose expression names the element
// in FHIRPath (Patient.name[0].given[1]). docs/validation.md describes what is and is not checked.
package validate
