// Package fhir owns the FHIR R4 primitives fhirgate speaks: stored resources as raw JSON with their
// version metadata, Bundles, OperationOutcomes, the resource type registry, and the mapping of
// internal errors to OperationOutcomes at the HTTP edge.
//
// Resources stay raw JSON end to end; code that needs a field decodes just that field.
package fhir
