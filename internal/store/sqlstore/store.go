package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

//go:embed migrations
var migrations embed.FS

// Options configures Open.
type Options struct {
	// Driver is "sqlite" or "postgres".
	Driver string
	// DSN is a file path for sqlite (":memory:" is not supported: use a temp dir) or a
	// PostgreSQL connection string.
	DSN string
	// Registry defines the search parameters indexed on write; DefaultRegistry when nil.
	Registry *search.Registry
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives migration logs; nothing is logged when nil.
	Logger *slog.Logger
	// MaxOpenConns, MaxIdleConns and ConnMaxLifetime tune the PostgreSQL pool and the SQLite
	// reader pool.
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration
}

// Store is the SQL store. It is safe for concurrent use.
type Store struct {
	// write is the connection pool for writes: one connection for SQLite (a single writer with
	// BEGIN IMMEDIATE, so writers queue in Go instead of spinning on SQLITE_BUSY).
	write *sql.DB
	// read is the pool for reads; the same pool as write on PostgreSQL.
	read    *sql.DB
	dialect dialect
	// committer groups concurrent SQLite write transactions into one commit (commit.go).
	committer *groupCommitter
	registry  *search.Registry
	now       func() time.Time
	log       *slog.Logger
}

// Open connects, runs pending migrations and returns the store.
func Open(ctx context.Context, opts Options) (*Store, error) {
	s := &Store{registry: opts.Registry, now: opts.Now, log: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.registry == nil {
		reg, err := search.DefaultRegistry()
		if err != nil {
			return nil, err
		}
		s.registry = reg
	}
	var err error
	switch opts.Driver {
	case "sqlite", "":
		s.dialect = sqliteDialect{}
		err = s.openSQLite(opts)
	case "postgres":
		err = fmt.Errorf("sqlstore: the postgres driver is not built yet")
	default:
		err = fmt.Errorf("sqlstore: unknown driver %q", opts.Driver)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) openSQLite(opts Options) error {
	if opts.DSN == "" || opts.DSN == ":memory:" {
		return errors.New("sqlstore: sqlite needs a database file path")
	}
	if err := os.MkdirAll(filepath.Dir(opts.DSN), 0o700); err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	// WAL lets readers run beside the writer; synchronous(FULL) makes every commit durable;
	// busy_timeout covers the other processes (CLI subcommands) that may share the file.
	pragmas := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)", "temp_store(MEMORY)", "cache_size(-65536)"} {
		pragmas.Add("_pragma", p)
	}
	dsn := "file:" + opts.DSN + "?" + pragmas.Encode()
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return fmt.Errorf("sqlstore: %w", err)
	}
	n := opts.MaxOpenConns
	if n <= 0 {
		n = 8
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	s.write, s.read = w, r
	s.committer = newGroupCommitter(w)
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	sub, err := fs.Sub(migrations, "migrations/"+s.dialect.name())
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(s.dialect.gooseDialect(), s.write, sub)
	if err != nil {
		return fmt.Errorf("sqlstore: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	for _, r := range results {
		s.log.Info("applied migration", "version", r.Source.Version, "file", filepath.Base(r.Source.Path), "duration", r.Duration)
	}
	return nil
}

// Close closes every connection.
func (s *Store) Close() error {
	if s.committer != nil {
		s.committer.close()
	}
	var errs []error
	if s.read != nil && s.read != s.write {
		errs = append(errs, s.read.Close())
	}
	if s.write != nil {
		errs = append(errs, s.write.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.write.PingContext(ctx) }

// DB returns the write pool, for the stores of other areas built on this database.
func (s *Store) DB() *sql.DB { return s.write }

// ReadDB returns the read pool.
func (s *Store) ReadDB() *sql.DB { return s.read }

// queryer is what both *sql.DB and *sql.Tx offer.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// inTx runs fn in a write transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	if s.committer != nil {
		return s.committer.run(ctx, fn)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	return nil
}
