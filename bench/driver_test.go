package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver for the bench schema setup

	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// The benchmarks run on SQLite by default and on PostgreSQL with BENCH_DRIVER=postgres. The
// PostgreSQL DSN is BENCH_POSTGRES (default FHIRGATE_TEST_POSTGRES); the data set lives in a
// schema of its own (fhirgate_bench_<size>), kept between runs like the SQLite file in BENCH_DIR,
// and marked complete by a bench_done table once populated.

// benchDriver is the store driver of the benchmarks: sqlite or postgres.
func benchDriver() string {
	if d := os.Getenv("BENCH_DRIVER"); d != "" {
		return d
	}
	return "sqlite"
}

func benchPostgresDSN() string {
	if d := os.Getenv("BENCH_POSTGRES"); d != "" {
		return d
	}
	return os.Getenv("FHIRGATE_TEST_POSTGRES")
}

func benchDir() string {
	if dir := os.Getenv("BENCH_DIR"); dir != "" {
		return dir
	}
	return filepath.Join(os.TempDir(), "fhirgate-bench")
}

// pgSearchPath sets search_path on a URL or key=value DSN.
func pgSearchPath(dsn, schema string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("bench postgres DSN: %w", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " search_path=" + schema, nil
}

// benchStoreOptions are the store options of a kept data set called name on the bench driver,
// whether it was completed by an earlier run, and the function that marks it complete.
func benchStoreOptions(name string, registry *search.Registry) (opts sqlstore.Options, done bool, markDone func() error, err error) {
	switch benchDriver() {
	case "sqlite":
		dir := benchDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return opts, false, nil, fmt.Errorf("bench dir: %w", err)
		}
		path := filepath.Join(dir, name+".db")
		_, statErr := os.Stat(path + ".done")
		return sqlstore.Options{Driver: "sqlite", DSN: path, Registry: registry}, statErr == nil,
			func() error { return os.WriteFile(path+".done", nil, 0o600) }, nil
	case "postgres":
		base := benchPostgresDSN()
		if base == "" {
			return opts, false, nil, errors.New("BENCH_DRIVER=postgres needs BENCH_POSTGRES or FHIRGATE_TEST_POSTGRES")
		}
		schema := "fhirgate_bench_" + strings.NewReplacer("-", "_", ".", "_").Replace(name)
		admin, err := sql.Open("pgx", base)
		if err != nil {
			return opts, false, nil, fmt.Errorf("bench postgres: %w", err)
		}
		defer admin.Close()
		if _, err := admin.Exec("CREATE SCHEMA IF NOT EXISTS " + schema); err != nil {
			return opts, false, nil, fmt.Errorf("bench postgres schema: %w", err)
		}
		var n int
		err = admin.QueryRow(`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'bench_done'`, schema).Scan(&n)
		if err != nil {
			return opts, false, nil, fmt.Errorf("bench postgres: %w", err)
		}
		dsn, err := pgSearchPath(base, schema)
		if err != nil {
			return opts, false, nil, err
		}
		mark := func() error {
			db, err := sql.Open("pgx", base)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE IF NOT EXISTS " + schema + ".bench_done (at timestamptz DEFAULT now())"); err != nil {
				return err
			}
			_, err = db.Exec("ANALYZE")
			return err
		}
		return sqlstore.Options{Driver: "postgres", DSN: dsn, Registry: registry, MaxOpenConns: 16}, n > 0, mark, nil
	default:
		return opts, false, nil, fmt.Errorf("BENCH_DRIVER %q: want sqlite or postgres", benchDriver())
	}
}

// benchTempStore opens an empty store on the bench driver for one benchmark: a file in
// b.TempDir on SQLite, a new schema dropped at the end on PostgreSQL.
func benchTempStore(b *testing.B, opts sqlstore.Options) *sqlstore.Store {
	b.Helper()
	ctx := context.Background()
	switch benchDriver() {
	case "postgres":
		base := benchPostgresDSN()
		if base == "" {
			b.Fatal("BENCH_DRIVER=postgres needs BENCH_POSTGRES or FHIRGATE_TEST_POSTGRES")
		}
		schema := fmt.Sprintf("fhirgate_bench_tmp_%d_%d", os.Getpid(), tempSchemas.add())
		admin, err := sql.Open("pgx", base)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := admin.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE; CREATE SCHEMA " + schema); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_, _ = admin.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
			admin.Close()
		})
		dsn, err := pgSearchPath(base, schema)
		if err != nil {
			b.Fatal(err)
		}
		opts.Driver, opts.DSN = "postgres", dsn
	default:
		opts.Driver, opts.DSN = "sqlite", filepath.Join(b.TempDir(), "bench.db")
	}
	s, err := sqlstore.Open(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

var tempSchemas counter
