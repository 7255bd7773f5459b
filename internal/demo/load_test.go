package demo

import (
	"context"
	"errors"
	"testing"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func openStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	st, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: t.TempDir() + "/fhirgate.db"})
	if err != nil {
		t.Fatalf("sqlstore.Open = %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if ok, err := Present(ctx, st); err != nil || ok {
		t.Fatalf("Present before Load = %v, %v; want false", ok, err)
	}
	opts := Options{Patients: 6, Seed: 5, Now: testNow}
	sum, err := Load(ctx, st, opts)
	if err != nil {
		t.Fatalf("Load = %v", err)
	}
	_, gen := generate(t, opts)
	if sum.Total != gen.Total || sum.Labeled != gen.Labeled {
		t.Errorf("Load summary = %s, generated %s", sum, gen)
	}
	if ok, err := Present(ctx, st); err != nil || !ok {
		t.Fatalf("Present after Load = %v, %v; want true", ok, err)
	}
	r, err := st.Read(ctx, "Practitioner", SmithPractitioner)
	if err != nil {
		t.Fatalf("Read(Practitioner/example-smith) = %v", err)
	}
	if r.VersionID != 1 {
		t.Errorf("version = %d, want 1", r.VersionID)
	}
}

func TestLoadCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Load(ctx, openStore(t), Options{Patients: 3}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load(cancelled) = %v, want context.Canceled", err)
	}
}

// BenchmarkLoad100 is the data set of `serve --demo`: 100 patients into a new SQLite store.
func BenchmarkLoad100(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		st := openStore(b)
		b.StartTimer()
		sum, err := Load(context.Background(), st, Options{Patients: 100, Seed: 1, Now: testNow})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(sum.Total), "resources")
	}
}
