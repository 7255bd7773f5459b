package main

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMigrate(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := runArgs(t, nil, "migrate", "--data-dir", dir)
	if err != nil || !strings.HasPrefix(out, "sqlite schema is at version ") {
		t.Fatalf("migrate = %q, %v (stderr %s)", out, err, stderr)
	}
	if !strings.Contains(stderr, "applied migration") {
		t.Errorf("first migrate logged no applied migration: %s", stderr)
	}
	// A second run finds nothing to do and lists what is applied.
	out2, stderr, err := runArgs(t, nil, "migrate", "--data-dir", dir, "--status")
	if err != nil || !strings.HasPrefix(out2, strings.SplitN(out, "\n", 2)[0]) || !strings.Contains(out2, "00001_resources.sql") || strings.Contains(out2, "pending") {
		t.Errorf("migrate --status = %q, %v", out2, err)
	}
	if strings.Contains(stderr, "applied migration") {
		t.Errorf("second migrate applied migrations again: %s", stderr)
	}
	if base := os.Getenv("FHIRGATE_TEST_POSTGRES"); base != "" {
		dsn := postgresSchema(t, base)
		out, stderr, err := runArgs(t, map[string]string{"FHIRGATE_STORAGE_DRIVER": "postgres", "FHIRGATE_STORAGE_DSN": dsn}, "migrate", "--data-dir", dir)
		if err != nil || !strings.HasPrefix(out, "postgres schema is at version ") {
			t.Errorf("migrate on postgres = %q, %v (stderr %s)", out, err, stderr)
		}
	}
}

// postgresSchema creates a schema of its own in the FHIRGATE_TEST_POSTGRES database (a URL DSN),
// dropped when the test ends, and returns the DSN that selects it.
func postgresSchema(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", base) // registered by internal/store/sqlstore
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := fmt.Sprintf("fhirgate_cmd_test_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Error(err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
