// Package sqlstore is fhirgate's database/sql store, shared by SQLite (embedded, the default) and
// PostgreSQL through a small dialect type: FHIR resources with version history and search index,
// and the tables of the other stores. Migrations are embedded per dialect and run at Open.
package sqlstore
