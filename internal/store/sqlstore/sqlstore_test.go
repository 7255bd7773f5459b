package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/backend/backendtest"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// openSQLite opens a fresh store in a temporary directory.
func openSQLite(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "fhirgate.db")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSQLiteConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return openSQLite(t) })
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "fhirgate.db")
	s, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := s.Create(ctx, "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: path})
	if err != nil {
		t.Fatalf("reopen (migrations must be idempotent): %v", err)
	}
	defer s.Close()
	if _, err := s.Read(ctx, "Patient", res.ID); err != nil {
		t.Errorf("Read after reopen: %v", err)
	}
}
