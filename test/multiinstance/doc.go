// Package multiinstance owns the end-to-end tests of several `fhirgate serve` processes on one
// PostgreSQL database and one Redis: that they act as one server (codes, refresh-token families,
// revocations, Consent changes, rate limits and the audit chain shared), and that a database
// outage is survived.
// The tests build the binary once and skip without FHIRGATE_TEST_POSTGRES and FHIRGATE_TEST_REDIS.
package multiinstance
