package sqlstore

import "github.com/pressly/goose/v3"

// dialect holds what differs between SQLite and PostgreSQL. Queries are written once with $n
// placeholders, which both accept.
type dialect interface {
	name() string
	gooseDialect() goose.Dialect
}

type sqliteDialect struct{}

func (sqliteDialect) name() string                { return "sqlite" }
func (sqliteDialect) gooseDialect() goose.Dialect { return goose.DialectSQLite3 }
