package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// fillSynthetic writes patients, each with obsPer Observations (half laboratory, half
// vital-signs, one date each) and one Condition, straight into the tables and the index: the
// shape a patient-scoped search meets in a large store. It returns the store.
func fillSynthetic(t testing.TB, patients, obsPer int) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "plan.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		pk := int64(0)
		add := func(typ, id string) (int64, error) {
			pk++
			_, err := tx.ExecContext(ctx, `INSERT INTO resources (pk, type, id, version, last_updated, deleted, body) VALUES ($1, $2, $3, 1, $4, 0, $5)`,
				pk, typ, id, 1_700_000_000_000_000+pk, `{"resourceType":"`+typ+`","id":"`+id+`"}`)
			return pk, err
		}
		exec := func(q string, args ...any) error {
			_, err := tx.ExecContext(ctx, q, args...)
			return err
		}
		for p := range patients {
			pid := fmt.Sprintf("p%d", p)
			ppk, err := add("Patient", pid)
			if err != nil {
				return err
			}
			if err := exec(`INSERT INTO idx_compartment VALUES ($1, 'Patient', 'Patient', $2)`, ppk, pid); err != nil {
				return err
			}
			for o := range obsPer {
				opk, err := add("Observation", fmt.Sprintf("o%d-%d", p, o))
				if err != nil {
					return err
				}
				cat := "laboratory"
				if o%2 == 1 {
					cat = "vital-signs"
				}
				day := int64(1_600_000_000_000_000) + int64(o)*86_400_000_000
				for _, q := range []struct {
					sql  string
					args []any
				}{
					{`INSERT INTO idx_reference (res_pk, res_type, param, target_type, target_id) VALUES ($1, 'Observation', 'patient', 'Patient', $2)`, []any{opk, pid}},
					{`INSERT INTO idx_reference (res_pk, res_type, param, target_type, target_id) VALUES ($1, 'Observation', 'subject', 'Patient', $2)`, []any{opk, pid}},
					{`INSERT INTO idx_token (res_pk, res_type, param, system, code) VALUES ($1, 'Observation', 'category', 'http://terminology.hl7.org/CodeSystem/observation-category', $2)`, []any{opk, cat}},
					{`INSERT INTO idx_token (res_pk, res_type, param, system, code) VALUES ($1, 'Observation', 'code', 'http://loinc.org', $2)`, []any{opk, fmt.Sprintf("%d-1", o%7)}},
					{`INSERT INTO idx_date (res_pk, res_type, param, low, high) VALUES ($1, 'Observation', 'date', $2, $3)`, []any{opk, day, day + 86_400_000_000 - 1}},
					{`INSERT INTO idx_compartment VALUES ($1, 'Observation', 'Patient', $2)`, []any{opk, pid}},
				} {
					if err := exec(q.sql, q.args...); err != nil {
						return err
					}
				}
			}
			cpk, err := add("Condition", "c"+pid)
			if err != nil {
				return err
			}
			if err := exec(`INSERT INTO idx_reference (res_pk, res_type, param, target_type, target_id) VALUES ($1, 'Condition', 'patient', 'Patient', $2)`, cpk, pid); err != nil {
				return err
			}
			if err := exec(`INSERT INTO idx_compartment VALUES ($1, 'Condition', 'Patient', $2)`, cpk, pid); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var planCases = []struct {
	name, typ, query string
	compartment      string
}{
	{"observations by patient and category", "Observation", "patient=Patient/p7&category=laboratory", ""},
	{"conditions by patient", "Condition", "patient=p7", ""},
	{"observations by patient, newest first", "Observation", "patient=p7&_sort=-date", ""},
	{"observations by patient and date", "Observation", "patient=p7&date=ge2020-09-14", ""},
	{"compartment with category", "Observation", "category=laboratory", "p7"},
	{"compartment, patient and category (a narrowed SMART search)", "Observation", "patient=p7&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&_sort=date", "p7"},
	{"category only (not patient-scoped: bounded by its matches)", "Observation", "category=laboratory&_count=10", ""},
	{"observations by patient name (chain)", "Observation", "patient.name=x", ""},
	{"patients with a laboratory observation (_has)", "Patient", "_id=p7&_has:Observation:patient:category=laboratory", ""},
}

func planQuery(t testing.TB, typ, query, compartment string) *search.Query {
	t.Helper()
	reg, err := testRegistry()
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := url.ParseQuery(query)
	q, _, err := search.Parse(reg, []string{typ}, vals, search.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("Parse(%q): %v", query, err)
	}
	if compartment != "" {
		q.Compartment = &search.CompartmentRef{Type: "Patient", ID: compartment}
	}
	return q
}

// TestSearchPlans checks that patient-scoped searches drive from the index: no step of the
// plan scans a table (the cost is then bounded by the patient's own rows, not the store size).
func TestSearchPlans(t *testing.T) {
	s := fillSynthetic(t, 20, 10)
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			q := planQuery(t, tc.typ, tc.query, tc.compartment)
			stmt, args, _, err := pageSQL(q, 50)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := s.read.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+stmt, args...)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			var plan []string
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan = append(plan, detail)
			}
			t.Logf("%s?%s\n%s\n  %s", tc.typ, tc.query, stmt, strings.Join(plan, "\n  "))
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SCAN m") {
					t.Errorf("plan step %q scans a table", step)
				}
				// Walking every resource of a type is a scan in all but name.
				if strings.Contains(step, "resources_type_updated (type=?)") {
					t.Errorf("plan step %q walks every resource of the type", step)
				}
			}
		})
	}
}

// BenchmarkPatientSearch runs one patient-scoped page at two store sizes: the time per search
// should not grow with the store.
func BenchmarkPatientSearch(b *testing.B) {
	for _, patients := range []int{100, 2000} {
		s := fillSynthetic(b, patients, 20)
		for _, tc := range planCases[:2] {
			q := planQuery(b, tc.typ, tc.query, tc.compartment)
			b.Run(fmt.Sprintf("%s/patients=%d", tc.name, patients), func(b *testing.B) {
				for b.Loop() {
					res, err := s.search(context.Background(), s.read, q)
					if err != nil || len(res.Matches) == 0 {
						b.Fatalf("search: %v, %d matches", err, len(res.Matches))
					}
				}
			})
		}
	}
}
