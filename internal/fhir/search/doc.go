// Package search owns FHIR search: the registry of search parameters built from the official R4
// definitions, extraction of index values from resources with a small FHIRPath subset, and parsing
// of search requests into a Query that backends compile.
package search
