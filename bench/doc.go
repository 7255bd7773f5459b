// Package bench owns fhirgate's load and throughput measurements: benchmarks and long-running
// checks over real components (the SQLite or PostgreSQL store, chosen by BENCH_DRIVER; the
// validator; the importer) that are skipped under -short.
package bench
