package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/fhirgate/fhirgate/internal/fhir"
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
	// MaxOpenConns bounds the PostgreSQL pool (default 20) and the SQLite reader pool (default 8).
	MaxOpenConns int
	// MaxIdleConns is how many idle PostgreSQL connections are kept (default, and at most,
	// MaxOpenConns).
	MaxIdleConns int
	// ConnMaxLifetime recycles PostgreSQL connections after this long (zero: never).
	ConnMaxLifetime time.Duration
}

// Default PostgreSQL pool settings.
const (
	pgDefaultMaxOpenConns = 20
	// pgConnMaxIdleTime closes connections idle this long, so that a burst's connections do not
	// stay open on the server forever.
	pgConnMaxIdleTime = 5 * time.Minute
)

// Store is the SQL store. It is safe for concurrent use.
type Store struct {
	// write is the connection pool for writes: one connection for SQLite (a single writer with
	// BEGIN IMMEDIATE, so writers queue in Go instead of spinning on SQLITE_BUSY).
	write *sql.DB
	// read is the pool for reads; the same pool as write on PostgreSQL.
	read    *sql.DB
	dialect dialect
	// pgConfig is the parsed PostgreSQL connection string (nil for SQLite), for the migration
	// lock's own connection.
	pgConfig *pgx.ConnConfig
	// committer groups concurrent SQLite write transactions into one commit (commit.go).
	committer *groupCommitter
	registry  *search.Registry
	now       func() time.Time
	log       *slog.Logger
	// revHook tells the revocation cache of new revocations (revocations.go).
	revHook revocationHook
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
		s.dialect = postgresDialect{}
		err = s.openPostgres(ctx, opts)
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

// openPostgres opens the pool of opts.DSN (a URL or key=value connection string that pgx
// parses) and checks that the server can hold fhirgate's data.
func (s *Store) openPostgres(ctx context.Context, opts Options) error {
	if opts.DSN == "" {
		return errors.New("sqlstore: postgres needs a connection string (storage.dsn or FHIRGATE_STORAGE_DSN)")
	}
	cfg, err := pgx.ParseConfig(opts.DSN)
	if err != nil {
		// pgconn redacts the password from the connection string it quotes.
		return fmt.Errorf("sqlstore: postgres: %w", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "fhirgate"
	}
	// The search SQL writes LIKE ... ESCAPE '\', which needs standard strings (the default
	// since PostgreSQL 9.1).
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	db := stdlib.OpenDB(*cfg)
	n := opts.MaxOpenConns
	if n <= 0 {
		n = pgDefaultMaxOpenConns
	}
	idle := opts.MaxIdleConns
	if idle <= 0 || idle > n {
		idle = n
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(idle)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	db.SetConnMaxIdleTime(pgConnMaxIdleTime)
	// Prefix searches compare with U+10FFFF (search_sql.go prefixPred) and the index holds any
	// Unicode text: the database must be UTF-8.
	var enc string
	if err := db.QueryRowContext(ctx, `SHOW server_encoding`).Scan(&enc); err != nil {
		db.Close()
		return fmt.Errorf("sqlstore: postgres: %w", err)
	}
	if enc != "UTF8" {
		db.Close()
		return fmt.Errorf("sqlstore: postgres: the database encoding is %s; fhirgate needs a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8')", enc)
	}
	s.write, s.read, s.pgConfig = db, db, cfg
	return nil
}

// provider is the goose migration provider of the store's dialect.
func (s *Store) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+s.dialect.name())
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(s.dialect.gooseDialect(), s.write, sub)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migrations: %w", err)
	}
	return p, nil
}

func (s *Store) migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	if s.pgConfig != nil {
		unlock, err := s.lockMigrations(ctx)
		if err != nil {
			return err
		}
		defer unlock()
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

// lockMigrations takes the PostgreSQL advisory lock that serializes migrations, so that several
// instances starting at once against one database migrate it once: the first applies what is
// pending, the others wait and then find nothing to do. goose's Provider takes no lock unless
// given a SessionLocker, and its locker polls (every 5 s by default); pg_advisory_lock blocks
// until the lock is free or ctx ends. The lock is held on a connection of its own, outside the
// pool, so that it works with any pool size, and it is released when that connection closes,
// even if the process dies. Its key is the schema, so that fhirgate deployments in different
// schemas of one database do not wait for each other.
func (s *Store) lockMigrations(ctx context.Context) (unlock func(), err error) {
	conn, err := pgx.ConnectConfig(ctx, s.pgConfig)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migration lock: %w", err)
	}
	var schema string
	if err := conn.QueryRow(ctx, `SELECT COALESCE(current_schema(), '')`).Scan(&schema); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("sqlstore: migration lock: %w", err)
	}
	key := migrationLockKey(schema)
	start := time.Now()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("sqlstore: migration lock: %w", err)
	}
	if d := time.Since(start); d > time.Second {
		s.log.Info("waited for another instance's migrations", "waited", d.Round(time.Millisecond))
	}
	return func() {
		ctx := context.WithoutCancel(ctx)
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			s.log.Warn("migration lock: unlock failed; closing the connection releases it", "err", err)
		}
		conn.Close(ctx)
	}, nil
}

// migrationLockKey is the advisory lock key of the migrations of schema.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("fhirgate migrations\x00" + schema))
	return int64(h.Sum64())
}

// Migration is one migration this build carries, and whether the database has it.
type Migration struct {
	Version int64
	// Name is the migration's file name.
	Name string
	// AppliedAt is when it was applied, in UTC; zero while pending.
	AppliedAt time.Time
}

// Driver returns the database driver: "sqlite" or "postgres".
func (s *Store) Driver() string { return s.dialect.name() }

// SchemaVersion returns the version of the newest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	p, err := s.provider()
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: schema version: %w", err)
	}
	return v, nil
}

// Migrations lists the migrations this build carries, in version order, with when each was
// applied. Open applies every pending one, so after Open all are applied.
func (s *Store) Migrations(ctx context.Context) ([]Migration, error) {
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migration status: %w", err)
	}
	out := make([]Migration, len(st))
	for i, m := range st {
		out[i] = Migration{Version: m.Source.Version, Name: filepath.Base(m.Source.Path)}
		if m.State == goose.StateApplied {
			out[i].AppliedAt = m.AppliedAt.UTC()
		}
	}
	return out, nil
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

// maxTxAttempts bounds how many times inTx runs a PostgreSQL transaction that keeps losing races
// with concurrent ones.
const maxTxAttempts = 16

// inTx runs fn in a write transaction, committing when it returns nil.
//
// On SQLite the writes go through the group committer (commit.go) and fn runs once. On
// PostgreSQL, when the transaction loses a race with a concurrent one (a unique violation of a
// row that the other wrote since fn read, a deadlock; see postgresDialect), it is rolled back and
// fn runs again in a new transaction, up to maxTxAttempts times; after that the error matches
// fhir.ErrConflict. fn must therefore be safe to run more than once: it may set its caller's
// result variables, but must not change anything else that outlives a failed attempt. Work that
// cannot be repeated uses inTxOnce.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.committer != nil {
		return s.committer.run(ctx, fn)
	}
	for attempt := 1; ; attempt++ {
		err := s.runTx(ctx, fn)
		if err == nil || !s.dialect.retryable(err) {
			return err
		}
		if attempt == maxTxAttempts {
			return concurrencyConflict(err, attempt)
		}
		// Full jitter, so that the transactions that conflicted do not meet again.
		backoff := time.Duration(rand.Int64N(int64(min(time.Millisecond<<attempt, 100*time.Millisecond)))) // #nosec G404 -- jitter, not a secret
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// inTxOnce runs fn in a write transaction like inTx, but never runs it again: on PostgreSQL a
// transaction that fails for concurrency returns an error that matches fhir.ErrConflict (HTTP
// 409; the client may send the request again). It is for fn that cannot be repeated, such as a
// transaction Bundle whose processing keeps state between its steps.
func (s *Store) inTxOnce(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.committer != nil {
		return s.committer.run(ctx, fn)
	}
	err := s.runTx(ctx, fn)
	if err != nil && s.dialect.retryable(err) {
		return concurrencyConflict(err, 1)
	}
	return err
}

func concurrencyConflict(err error, attempts int) error {
	return fmt.Errorf("sqlstore: the transaction conflicted with concurrent writes (%d attempts): %w: %w", attempts, fhir.ErrConflict, err)
}

// runTx runs fn in one write transaction.
func (s *Store) runTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := s.write.BeginTx(ctx, s.dialect.writeTxOptions())
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

// Registry is the search parameter registry the store indexes with; parse searches with it.
func (s *Store) Registry() *search.Registry { return s.registry }
