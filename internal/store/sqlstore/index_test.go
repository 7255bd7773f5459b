package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver of TestWriteIndexPostgres

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

func openIndexStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "index.db"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const indexObservation = `{
  "resourceType": "Observation", "id": "o1",
  "meta": {"lastUpdated": "2024-05-06T07:08:09.123Z",
           "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
  "status": "final",
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}]},
  "subject": {"reference": "Patient/p1"},
  "performer": [{"reference": "Patient/p2"}, {"reference": "https://elsewhere.example/fhir/Patient/p3"}],
  "effectiveDateTime": "2024-05-06",
  "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
  "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]
}`

const indexPatient = `{
  "resourceType": "Patient", "id": "p1",
  "name": [{"family": "Núñez", "given": ["José"]}],
  "birthDate": "1980-03",
  "gender": "female",
  "meta": {"profile": ["http://example.org/StructureDefinition/p"]}
}`

// rowsOf returns the rows of pk in table as strings of their columns (after res_pk), sorted.
func rowsOf(t *testing.T, s *Store, table string, pk int64) []string {
	t.Helper()
	cols := ""
	for _, tb := range idxTables {
		if tb.name == table {
			cols = strings.Join(tb.cols[1:], ", ")
		}
	}
	rows, err := s.DB().Query("SELECT "+cols+" FROM "+table+" WHERE res_pk = $1", pk)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := strings.Count(cols, ",") + 1
	var out []string
	for rows.Next() {
		vals := make([]any, n)
		ptrs := make([]any, n)
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		parts := make([]string, n)
		for i, v := range vals {
			switch v := v.(type) {
			case nil:
				parts[i] = "NULL"
			case []byte:
				parts[i] = string(v)
			default:
				parts[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func writeIndexTx(t *testing.T, s *Store, pk int64, typ, body string) error {
	t.Helper()
	return s.inTx(context.Background(), func(tx *sql.Tx) error {
		return s.writeIndex(context.Background(), tx, pk, typ, []byte(body))
	})
}

func TestWriteIndexRows(t *testing.T) {
	t.Run("one transaction each", func(t *testing.T) { testWriteIndexRows(t, openIndexStore(t), false) })
	t.Run("one transaction", func(t *testing.T) { testWriteIndexRows(t, openIndexStore(t), true) })
}

func testWriteIndexRows(t *testing.T, s *Store, oneTx bool) {
	ctx := context.Background()
	if oneTx {
		// Several writes in one transaction reuse the statements it prepared.
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			for _, pk := range []int64{7, 8, 7} {
				if err := s.writeIndex(ctx, tx, pk, "Observation", []byte(indexObservation)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	} else {
		if err := writeIndexTx(t, s, 7, "Observation", indexObservation); err != nil {
			t.Fatal(err)
		}
		// Writing the same resource again (an update) gives the same rows, not twice as many.
		if err := writeIndexTx(t, s, 7, "Observation", indexObservation); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		table string
		want  []string
	}{
		{"idx_token", []string{
			"Observation|_security|http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R|",
			"Observation|code|http://loinc.org|85354-9|blood pressure",
			"Observation|combo-code|http://loinc.org|8480-6|",
			"Observation|combo-code|http://loinc.org|85354-9|blood pressure",
			"Observation|component-code|http://loinc.org|8480-6|",
			"Observation|status||final|",
		}},
		{"idx_reference", []string{
			"Observation|patient|Patient|p1|||",
			"Observation|performer|Patient|p2|||",
			"Observation|performer|Patient|p3|https://elsewhere.example/fhir/Patient/p3||",
			"Observation|subject|Patient|p1|||",
		}},
		{"idx_date", []string{"Observation|date|1714953600000000|1715039999999999"}},
		{"idx_quantity", []string{
			"Observation|combo-value-quantity|http://unitsofmeasure.org|kg|kg|72.5",
			"Observation|combo-value-quantity|http://unitsofmeasure.org|mm[Hg]|mmHg|120",
			"Observation|component-value-quantity|http://unitsofmeasure.org|mm[Hg]|mmHg|120",
			"Observation|value-quantity|http://unitsofmeasure.org|kg|kg|72.5",
		}},
		{"idx_composite", []string{
			"Observation|code-value-quantity|http://loinc.org|85354-9|http://unitsofmeasure.org|kg||72.5|NULL|NULL",
			"Observation|combo-code-value-quantity|http://loinc.org|8480-6|http://unitsofmeasure.org|mm[Hg]||120|NULL|NULL",
			"Observation|combo-code-value-quantity|http://loinc.org|85354-9|http://unitsofmeasure.org|kg||72.5|NULL|NULL",
			"Observation|component-code-value-quantity|http://loinc.org|8480-6|http://unitsofmeasure.org|mm[Hg]||120|NULL|NULL",
		}},
		// Only local references place a resource in a compartment.
		{"idx_compartment", []string{"Observation|Patient|p1", "Observation|Patient|p2"}},
		{"idx_string", nil},
		{"idx_uri", nil},
		{"idx_number", nil},
	}
	for _, tt := range tests {
		if got := rowsOf(t, s, tt.table, 7); !slices.Equal(got, tt.want) {
			t.Errorf("%s rows =\n  %s\nwant\n  %s", tt.table, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
		}
	}
}

func TestWriteIndexReplacesAndDeletes(t *testing.T) {
	s := openIndexStore(t)
	ctx := context.Background()
	if err := writeIndexTx(t, s, 1, "Observation", indexObservation); err != nil {
		t.Fatal(err)
	}
	if err := writeIndexTx(t, s, 2, "Patient", indexPatient); err != nil {
		t.Fatal(err)
	}
	// Rewriting pk 1 as a smaller Observation leaves none of the old rows.
	if err := writeIndexTx(t, s, 1, "Observation", `{"resourceType":"Observation","id":"o1","status":"amended"}`); err != nil {
		t.Fatal(err)
	}
	for _, tb := range idxTables {
		got := rowsOf(t, s, tb.name, 1)
		want := []string(nil)
		if tb.name == "idx_token" {
			want = []string{"Observation|status||amended|"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("after rewrite, %s rows of pk 1 = %v, want %v", tb.name, got, want)
		}
	}
	if got := rowsOf(t, s, "idx_string", 2); !slices.Contains(got, "Patient|family|nunez|Núñez") {
		t.Errorf("Patient string rows = %v", got)
	}
	if got := rowsOf(t, s, "idx_compartment", 2); !slices.Equal(got, []string{"Patient|Patient|p1"}) {
		t.Errorf("Patient compartment rows = %v, want its own", got)
	}
	if got := rowsOf(t, s, "idx_uri", 2); !slices.Equal(got, []string{"Patient|_profile|http://example.org/StructureDefinition/p"}) {
		t.Errorf("Patient uri rows = %v", got)
	}
	if err := s.inTx(ctx, func(tx *sql.Tx) error { return s.deleteIndex(ctx, tx, 2) }); err != nil {
		t.Fatal(err)
	}
	for _, tb := range idxTables {
		if got := rowsOf(t, s, tb.name, 2); len(got) != 0 {
			t.Errorf("after deleteIndex, %s still holds %v", tb.name, got)
		}
	}
	// pk 1 is untouched by the delete of pk 2.
	if got := rowsOf(t, s, "idx_token", 1); len(got) != 1 {
		t.Errorf("deleteIndex(2) touched pk 1: %v", got)
	}
}

// TestWriteIndexManyRows crosses the multi-row INSERT limit.
func TestWriteIndexManyRows(t *testing.T) {
	s := openIndexStore(t)
	var given []string
	for i := range 150 {
		given = append(given, fmt.Sprintf("%q", fmt.Sprintf("Name%03d", i)))
	}
	body := `{"resourceType":"Patient","id":"big","name":[{"given":[` + strings.Join(given, ",") + `]}]}`
	if err := writeIndexTx(t, s, 3, "Patient", body); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM idx_string WHERE res_pk = 3 AND param = 'given'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 150 {
		t.Errorf("given rows = %d, want 150", n)
	}
}

func TestWriteIndexRejectsBadBodies(t *testing.T) {
	s := openIndexStore(t)
	for _, body := range []string{`not json`, `{"resourceType":"Patient"}`, `{"resourceType":"Observation","valueQuantity":{"value":1e400}}`} {
		err := writeIndexTx(t, s, 1, "Observation", body)
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || !errors.Is(err, search.ErrNotIndexable) {
			t.Errorf("writeIndex(%s) error = %v, want a 400 wrapping ErrNotIndexable", body, err)
		}
	}
}

// TestIndexSearch runs searches through the store's query compiler over rows this writer made.
func TestIndexSearch(t *testing.T) {
	s := openIndexStore(t)
	ctx := context.Background()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ typ, id, body string }{{"Observation", "o1", indexObservation}, {"Patient", "p1", indexPatient}} {
		if _, _, err := s.Update(ctx, r.typ, r.id, []byte(r.body), backend.UpdateOptions{}); err != nil {
			t.Fatalf("Update %s: %v", r.typ, err)
		}
	}
	tests := []struct {
		typ, query string
		want       int
	}{
		{"Observation", "code=http://loinc.org|85354-9", 1},
		{"Observation", "code=85354-9", 1},
		{"Observation", "code=http://snomed.info/sct|85354-9", 0},
		{"Observation", "code:text=blood", 1},
		{"Observation", "patient=Patient/p1", 1},
		{"Observation", "subject=p1", 1},
		{"Observation", "performer=Patient/p3", 1},
		{"Observation", "_security=R", 1},
		{"Observation", "_security=N", 0},
		{"Observation", "date=2024-05", 1},
		{"Observation", "date=gt2024-05-07", 0},
		{"Observation", "value-quantity=72.5|http://unitsofmeasure.org|kg", 1},
		{"Observation", "value-quantity=gt100", 0},
		{"Observation", "component-code-value-quantity=http://loinc.org|8480-6$gt119", 1},
		{"Observation", "component-code-value-quantity=http://loinc.org|8480-6$lt119", 0},
		{"Patient", "family=nun", 1},
		{"Patient", "name=jose", 1},
		{"Patient", "family:exact=Núñez", 1},
		{"Patient", "birthdate=1980", 1},
		{"Patient", "gender=female", 1},
		{"Patient", "_profile=http://example.org/StructureDefinition/p", 1},
	}
	for _, tt := range tests {
		vals, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		q, _, err := search.Parse(reg, []string{tt.typ}, vals, search.ParseOptions{})
		if err != nil {
			t.Errorf("Parse(%s?%s): %v", tt.typ, tt.query, err)
			continue
		}
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Errorf("Search(%s?%s): %v", tt.typ, tt.query, err)
			continue
		}
		if len(res.Matches) != tt.want {
			t.Errorf("Search(%s?%s) = %d matches, want %d", tt.typ, tt.query, len(res.Matches), tt.want)
		}
	}
	// The patient compartment holds the Observation of p1 (and of p2), not of p3.
	for _, tt := range []struct {
		id   string
		want int
	}{{"p1", 2}, {"p2", 1}, {"p3", 0}} {
		q := &search.Query{Types: []string{"Observation", "Patient"}, Compartment: &search.CompartmentRef{Type: "Patient", ID: tt.id}}
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matches) != tt.want {
			t.Errorf("compartment Patient/%s holds %d resources, want %d", tt.id, len(res.Matches), tt.want)
		}
	}
}

// BenchmarkWriteIndex writes the index of Observations, 100 per transaction as a bulk import
// does, and one per transaction as single creates do.
func BenchmarkWriteIndex(b *testing.B) {
	b.Run("100 per tx", func(b *testing.B) { benchmarkWriteIndex(b, 100) })
	b.Run("1 per tx", func(b *testing.B) { benchmarkWriteIndex(b, 1) })
}

func benchmarkWriteIndex(b *testing.B, perTx int) {
	s := openIndexStore(b)
	ctx := context.Background()
	body := []byte(indexObservation)
	pk := int64(0)
	b.ReportAllocs()
	for b.Loop() {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			for range perTx {
				pk++
				if err := s.writeIndex(ctx, tx, pk, "Observation", body); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*perTx), "µs/resource")
}

// TestWriteIndexPostgres runs the writer's SQL on PostgreSQL (FHIRGATE_TEST_POSTGRES, a DSN): the
// index tables of migration 00002 with PostgreSQL types, created inside a transaction that is
// rolled back, so the database is left as it was.
func TestWriteIndexPostgres(t *testing.T) {
	dsn := os.Getenv("FHIRGATE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("FHIRGATE_TEST_POSTGRES is not set (a PostgreSQL DSN); skipping the PostgreSQL index test")
	}
	ctx := context.Background()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	ddl, err := migrations.ReadFile("migrations/sqlite/00002_search_index.sql")
	if err != nil {
		t.Fatal(err)
	}
	up, _, _ := strings.Cut(string(ddl), "-- +goose Down")
	up = strings.NewReplacer("INTEGER", "BIGINT", "REAL", "DOUBLE PRECISION").Replace(up)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	schema := fmt.Sprintf("fhirgate_index_test_%d", time.Now().UnixNano())
	for _, stmt := range []string{"CREATE SCHEMA " + schema, "SET LOCAL search_path TO " + schema, up} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%.60s: %v", stmt, err)
		}
	}
	s := &Store{registry: reg}
	for _, pk := range []int64{1, 1, 2} { // the second write of pk 1 replaces its rows
		if err := s.writeIndex(ctx, tx, pk, "Observation", []byte(indexObservation)); err != nil {
			t.Fatalf("writeIndex: %v", err)
		}
	}
	count := func(table string, pk int64) int {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE res_pk = $1", pk).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	want := map[string]int{"idx_token": 6, "idx_reference": 4, "idx_date": 1, "idx_quantity": 4, "idx_composite": 4, "idx_compartment": 2}
	for table, n := range want {
		if got := count(table, 1); got != n {
			t.Errorf("PostgreSQL %s rows of pk 1 = %d, want %d", table, got, n)
		}
	}
	var low, high int64
	if err := tx.QueryRowContext(ctx, "SELECT low, high FROM idx_date WHERE res_pk = 1").Scan(&low, &high); err != nil {
		t.Fatal(err)
	}
	if low != 1714953600000000 || high != 1715039999999999 {
		t.Errorf("PostgreSQL idx_date = [%d, %d]", low, high)
	}
	if err := s.deleteIndex(ctx, tx, 1); err != nil {
		t.Fatalf("deleteIndex: %v", err)
	}
	for table := range want {
		if got := count(table, 1); got != 0 {
			t.Errorf("after deleteIndex, PostgreSQL %s holds %d rows of pk 1", table, got)
		}
		if got := count(table, 2); got != want[table] {
			t.Errorf("deleteIndex(1) changed the %s rows of pk 2: %d", table, got)
		}
	}
}
