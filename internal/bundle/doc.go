// Package bundle owns the processing of batch and transaction Bundles (POST [base]): the order in
// which entries run, the atomicity of transactions, the resolution of urn:uuid / urn:oid and
// conditional references between entries, conditional create, update and delete, If-Match
// versioned writes, and the batch-response / transaction-response Bundle.
//
// A Processor works over any backend.Backend. A transaction runs inside one Backend.InTx, so a
// failing entry leaves no trace; batch entries run each in their own InTx and fail on their own.
package bundle
