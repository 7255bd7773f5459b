// Package importer owns bulk loading of FHIR data into a backend: streaming NDJSON files (one
// resource per line, as a Bulk Data or Synthea export writes them) and Bundle files (transaction,
// batch, collection), gzip-compressed or not, with memory use that stays flat whatever the input
// size.
//
// Single resources keep their ids (each is an update-or-create of Type/id, so re-importing the
// same data changes nothing but versions); they are validated in parallel and written in chunks,
// one backend transaction per chunk. A record that fails is reported with its file and line (or
// entry index) and skipped without rolling back its neighbours: when a chunk fails to commit, its
// records are written again one by one. A transaction Bundle is imported atomically through
// package bundle.
package importer
