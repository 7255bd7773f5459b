// Package sharedstate owns the fast state that several fhirgate instances share through Redis:
// revocation notices over pub/sub in front of each instance's cache of revocation answers, the
// client-assertion jti replay cache, and login throttling counters.
//
// The database stays the source of truth. Every answer that matters for security is either
// confirmed by the database or safe to lose: while Redis is unreachable the revocation cache is
// bypassed (every check asks the database), assertion jtis are recorded in the database only, and
// login throttling falls back to per-instance counters. Losing Redis loses no data.
package sharedstate
