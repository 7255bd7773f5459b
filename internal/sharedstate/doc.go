// Package sharedstate owns the fast state that several fhirgate instances share through Redis:
// revocation notices over pub/sub in front of each instance's cache of revocation answers, the
// client-assertion jti replay cache, login throttling counters, and invalidation notices over
// pub/sub in front of other per-instance caches (patients' Consents).
//
// The database stays the source of truth. Every answer that matters for security is either
// confirmed by the database or safe to lose: while Redis is unreachable the revocation cache is
// bypassed (every check asks the database), so are the caches behind invalidation notices (every
// lookup reads the source), assertion jtis are recorded in the database only, and login
// throttling falls back to per-instance counters. Losing Redis loses no data.
package sharedstate
