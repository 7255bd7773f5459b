package sqlstore

import (
	"database/sql"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect holds what differs between SQLite and PostgreSQL. Queries are written once with $n
// placeholders, which both accept; the DDL differs per dialect (migrations/sqlite,
// migrations/postgres).
type dialect interface {
	// name is the directory of the dialect's migrations.
	name() string
	gooseDialect() goose.Dialect
	// writeTxOptions are the options of the write transactions of inTx.
	writeTxOptions() *sql.TxOptions
	// retryable reports whether a write transaction that failed with err may succeed when run
	// again from the start, because it lost a race with another one.
	retryable(err error) bool
	// uniqueViolation reports whether err is a UNIQUE or PRIMARY KEY constraint violation.
	uniqueViolation(err error) bool
}

// sqliteDialect: one writer connection whose transactions BEGIN IMMEDIATE (store.go), so write
// transactions are serial and never fail for concurrency.
type sqliteDialect struct{}

func (sqliteDialect) name() string                   { return "sqlite" }
func (sqliteDialect) gooseDialect() goose.Dialect    { return goose.DialectSQLite3 }
func (sqliteDialect) writeTxOptions() *sql.TxOptions { return nil }
func (sqliteDialect) retryable(error) bool           { return false }

func (sqliteDialect) uniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// postgresDialect: write transactions run at READ COMMITTED and inTx runs again the ones that
// lost a race, so that writes behave as SQLite's serial ones do. Every read-then-write of the
// store ends in a write that a unique index guards: a new resource in resources (type, id), a
// new version in resource_history (pk, version), which the version read determines, and an
// audit entry in audit_log (seq), which the head read determines. Of two transactions that read
// the same state, the second to write fails with a unique violation once the first commits; run
// again, it reads the new state (an If-Match update then fails as it should, an update writes the
// next version). A row update that waits for another one (a code redeemed twice) re-checks its
// condition when the first commits, so it needs no retry. SERIALIZABLE was measured and refused:
// its predicate locks on the index pages that concurrent creates share make independent writes
// fail each other (16 writers: transactions failing after 16 attempts).
type postgresDialect struct{}

// PostgreSQL error codes (Appendix A of the PostgreSQL manual).
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

func (postgresDialect) name() string                { return "postgres" }
func (postgresDialect) gooseDialect() goose.Dialect { return goose.DialectPostgres }

// writeTxOptions names the level, whatever the database's default_transaction_isolation.
func (postgresDialect) writeTxOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

func (postgresDialect) retryable(err error) bool {
	switch pgCode(err) {
	case pgUniqueViolation, pgSerializationFailure, pgDeadlockDetected:
		return true
	}
	return false
}

func (postgresDialect) uniqueViolation(err error) bool { return pgCode(err) == pgUniqueViolation }

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
