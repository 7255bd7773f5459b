// Package fhirapi owns the FHIR R4 REST API: the interactions (read, vread, create, update,
// delete, history, search, batch/transaction) over a backend.Backend, content negotiation, paging
// links and the CapabilityStatement at /fhir/metadata.
package fhirapi
