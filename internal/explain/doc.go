// Package explain owns the policy explain endpoint of the admin API (POST /admin/policy/explain):
// given an access token (verified like the FHIR API verifies it) or raw claims (an explicit
// what-if, never trusted as a token), and a FHIR request (method and URL), it builds the
// policy.Input the FHIR API would build, asks the policy engine, and answers JSON with the
// decision: allow, status, reasons, detail and the narrowing applied to the search, so that an
// operator can answer "why was I denied?" without reading logs.
//
// It evaluates; it never reads or writes FHIR data. Checks that the FHIR API makes against the
// stored resource (compartment and granular constraints on a read, update or delete) are
// evaluated only when the caller passes that body in "resource" or "current".
package explain
