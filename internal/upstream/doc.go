// Package upstream owns the backend.Backend that secures an existing FHIR server: it turns each
// interaction (and the narrowed search Query the policy built) into a FHIR REST request to the
// upstream, decodes the answer into fhir.Resources for the FHIR API's response filter, maps the
// upstream's failures to OperationOutcome errors (502 unreachable or failing, 504 slow), carries
// the upstream's paging links as opaque cursors (which the FHIR API signs into its own page
// tokens), and authenticates to the upstream (none, a static header, or OAuth
// client_credentials).
package upstream
