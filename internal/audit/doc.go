// Package audit owns fhirgate's audit trail: the Event every caller fills for each FHIR interaction
// and security event, its mapping to a FHIR R4 AuditEvent following the IHE Basic Audit Log
// Patterns (BALP), the tamper-evident SHA-256 hash chain the events are appended to by a single
// batching appender, signed checkpoints of the chain head and their verification, the search of
// the trail (ParseSearch) and the patient's view of it (DisclosureView), the sinks that copy
// committed entries to a SIEM (JSON lines on stdout or a rotating file, syslog over TCP, TLS or
// UDP, webhook), and the detectors that raise alerts from the event stream.
//
// The flow: a caller (FHIR handler, authorization server) calls Trail.Record with one Event per
// request. Record builds the AuditEvent JSON on the caller's goroutine and queues it; the appender
// goroutine assigns sequence numbers, chains the hashes and commits a whole batch in one
// transaction. With DurabilitySync, Record returns once the batch holding the event is committed;
// with DurabilityBatch it returns at once and the event is committed within FlushInterval. Only
// committed entries go to the sinks and the detectors; alerts are recorded as events themselves.
// Each sink keeps its own cursor: one that is down or slow is retried with backoff and, past its
// memory queue, fed from the chain in the store, so it misses nothing while the process runs.
//
// Nothing in the trail holds a resource body, a token or a secret: the Event has no field for
// them, and query strings are stripped of credential parameters.
package audit
