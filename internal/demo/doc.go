// Package demo owns fhirgate's synthetic demo data: a deterministic generator of realistic FHIR
// R4 records (organizations, practitioners, patients with encounters, vital signs, laboratory
// results, conditions, medications, allergies, immunizations, care teams and provenance, some
// with security labels) and the loader that writes them through a backend.Backend.
//
// The same Options give the same bytes. The patients Patient/example-alice and
// Patient/example-bob and the physician Practitioner/example-smith always exist, for the demo
// logins. docs/demo-data.md describes the data set.
package demo
