// Package bench owns fhirgate's load and throughput measurements: benchmarks and long-running
// checks over real components (the SQLite store, the validator, the importer) that are skipped
// under -short.
package bench
