package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// This file is the PostgreSQL test fixture of the package: FHIRGATE_TEST_POSTGRES is a DSN
// (postgres://postgres@127.0.0.1:5432/test?sslmode=disable); without it the PostgreSQL tests
// skip. Each test gets a schema of its own (the store's DSN selects it with search_path), made
// empty and dropped in t.Cleanup, so tests run in parallel and repeatedly on one database.

const pgEnv = "FHIRGATE_TEST_POSTGRES"

// pgAdmin is the connection that creates and drops the test schemas.
var pgAdmin = sync.OnceValues(func() (*sql.DB, error) {
	db, err := sql.Open("pgx", os.Getenv(pgEnv))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return db, db.Ping()
})

// PostgresTestDSN returns the DSN of a new, empty schema of the test database, dropped when the
// test ends; it skips the test when FHIRGATE_TEST_POSTGRES is unset. Stores opened on one DSN
// share the schema, as instances of one deployment share a database.
func PostgresTestDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(pgEnv)
	if base == "" {
		t.Skip(pgEnv + " is not set (a PostgreSQL DSN such as postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL test")
	}
	admin, err := pgAdmin()
	if err != nil {
		t.Fatalf("%s: %v", pgEnv, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "fhirgate_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(t, base, schema)
}

// withSearchPath sets the search_path run-time parameter of a URL or key=value DSN.
func withSearchPath(t testing.TB, dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("%s: %v", pgEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

// OpenPostgresTest opens a store on a new schema (PostgresTestDSN) with opts, closed when the
// test ends. Driver and DSN of opts are set by it.
func OpenPostgresTest(t testing.TB, opts Options) *Store {
	t.Helper()
	opts.Driver, opts.DSN = "postgres", PostgresTestDSN(t)
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open postgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// DriversUnderTest are the drivers the suites run on: sqlite always, postgres when
// FHIRGATE_TEST_POSTGRES is set.
func DriversUnderTest() []string {
	if os.Getenv(pgEnv) == "" {
		return []string{"sqlite"}
	}
	return []string{"sqlite", "postgres"}
}

// OpenTestStore opens a fresh store of driver with opts (Driver and DSN are set by it), closed
// when the test ends: a file in t.TempDir for sqlite, a new schema for postgres.
func OpenTestStore(t testing.TB, driver string, opts Options) *Store {
	t.Helper()
	if driver == "postgres" {
		return OpenPostgresTest(t, opts)
	}
	opts.Driver, opts.DSN = "sqlite", filepath.Join(t.TempDir(), "fhirgate.db")
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestUniqueViolation(t *testing.T) {
	for _, driver := range DriversUnderTest() {
		t.Run(driver, func(t *testing.T) {
			s := OpenTestStore(t, driver, Options{})
			ctx := context.Background()
			const ins = `INSERT INTO oauth_revoked_jtis (jti, expires_at) VALUES ($1, 1)`
			if _, err := s.DB().ExecContext(ctx, ins, "j"); err != nil {
				t.Fatal(err)
			}
			_, err := s.DB().ExecContext(ctx, ins, "j")
			if err == nil || !s.dialect.uniqueViolation(err) {
				t.Errorf("uniqueViolation(%v) = false, want true", err)
			}
			_, err = s.DB().ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`)
			if err == nil || s.dialect.uniqueViolation(err) {
				t.Errorf("uniqueViolation(%v) = true, want false", err)
			}
		})
	}
}

// TestPostgresRetryLostRace makes a write transaction lose a race with one that commits while it
// runs: inTx runs it again and succeeds; inTxOnce reports fhir.ErrConflict.
func TestPostgresRetryLostRace(t *testing.T) {
	s := OpenPostgresTest(t, Options{})
	ctx := context.Background()
	const ins = `INSERT INTO oauth_revoked_jtis (jti, expires_at) VALUES ($1, 1)`
	// fn writes key unless it is there; on its first run another transaction writes the key
	// and commits between fn's check and fn's write, as a concurrent request would.
	racing := func(key string, runs *int) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			*runs++
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM oauth_revoked_jtis WHERE jti = $1`, key).Scan(&n); err != nil {
				return err
			}
			if *runs == 1 {
				if err := s.runTx(ctx, func(other *sql.Tx) error { _, err := other.ExecContext(ctx, ins, key); return err }); err != nil {
					return err
				}
			}
			if n > 0 {
				return nil
			}
			_, err := tx.ExecContext(ctx, ins, key)
			return err
		}
	}
	runs := 0
	if err := s.inTx(ctx, racing("a", &runs)); err != nil {
		t.Fatalf("inTx = %v, want success after a retry", err)
	}
	if runs != 2 {
		t.Errorf("inTx ran fn %d times, want 2", runs)
	}
	runs = 0
	err := s.inTxOnce(ctx, racing("b", &runs))
	if !errors.Is(err, fhir.ErrConflict) || runs != 1 {
		t.Errorf("inTxOnce = %v after %d runs, want fhir.ErrConflict after 1", err, runs)
	}
	// A failure that is not a lost race is returned as it is, after one run.
	runs = 0
	boom := errors.New("boom")
	if err := s.inTx(ctx, func(*sql.Tx) error { runs++; return boom }); !errors.Is(err, boom) || runs != 1 {
		t.Errorf("inTx = %v after %d runs, want boom after 1", err, runs)
	}
}

// forEachDriver runs fn as a subtest per driver under test.
func forEachDriver(t *testing.T, fn func(t *testing.T, driver string)) {
	for _, d := range DriversUnderTest() {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}
