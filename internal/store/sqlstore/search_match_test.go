package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// This test checks the SQL compiler alone: it writes hand-made index rows (what extraction would
// write) and checks which resources each query matches. search_test.go checks the same through
// the Backend methods, with the rows that extraction really writes.

// idx is one hand-made index row: table and columns after res_pk, res_type.
type idx struct {
	table string
	cols  []string
	vals  []any
}

func str(param, value, exact string) idx {
	return idx{"idx_string", []string{"param", "value", "exact"}, []any{param, value, exact}}
}
func tok(param, system, code, text string) idx {
	return idx{"idx_token", []string{"param", "system", "code", "text"}, []any{param, system, code, text}}
}
func ref(param, typ, id string) idx {
	return idx{"idx_reference", []string{"param", "target_type", "target_id"}, []any{param, typ, id}}
}
func refURL(param, typ, id, url string) idx {
	return idx{"idx_reference", []string{"param", "target_type", "target_id", "url"}, []any{param, typ, id, url}}
}
func refIdent(param, system, value string) idx {
	return idx{"idx_reference", []string{"param", "ident_system", "ident_value"}, []any{param, system, value}}
}
func date(param, low, high string) idx {
	return idx{"idx_date", []string{"param", "low", "high"}, []any{param, mustMicros(low), mustMicros(high)}}
}
func num(param string, v float64) idx {
	return idx{"idx_number", []string{"param", "value"}, []any{param, v}}
}
func qty(param, system, code, unit string, v float64) idx {
	return idx{"idx_quantity", []string{"param", "system", "code", "unit", "value"}, []any{param, system, code, unit, v}}
}
func uri(param, v string) idx {
	return idx{"idx_uri", []string{"param", "value"}, []any{param, v}}
}
func compQty(param, system, code, vsystem, vcode string, v float64) idx {
	return idx{"idx_composite", []string{"param", "system", "code", "v_system", "v_code", "v_num"}, []any{param, system, code, vsystem, vcode, v}}
}
func inPatient(id string) idx {
	return idx{"idx_compartment", []string{"comp_type", "comp_id"}, []any{"Patient", id}}
}

func mustMicros(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMicro()
}

const (
	loinc = "http://loinc.org"
	ucum  = "http://unitsofmeasure.org"
)

// fixture is the hand-checked data set of TestSearchCompiler.
var fixture = []struct {
	typ, id string
	updated string
	deleted bool
	rows    []idx
}{
	{"Patient", "p1", "2023-01-01T00:00:00Z", false, []idx{
		str("name", "peter", "Peter"), str("name", "chalmers", "Chalmers"), date("birthdate", "1974-12-25T00:00:00Z", "1974-12-25T23:59:59.999999Z"),
		tok("identifier", "http://ids", "111", ""), tok("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "111"),
		ref("organization", "Organization", "org1"), tok("gender", "http://hl7.org/fhir/administrative-gender", "male", ""), inPatient("p1")}},
	{"Patient", "p2", "2023-01-02T00:00:00Z", false, []idx{
		str("name", "petra", "Petra"), str("name", "smith", "Smith"), date("birthdate", "1980-03-01T00:00:00Z", "1980-03-31T23:59:59.999999Z"),
		tok("identifier", "http://ids", "222", ""), ref("organization", "Organization", "org2"), refIdent("organization", "http://orgids", "X1"),
		tok("gender", "http://hl7.org/fhir/administrative-gender", "female", ""), inPatient("p2")}},
	{"Patient", "p3", "2023-01-03T00:00:00Z", false, []idx{str("name", "anne", "Anne"), inPatient("p3")}},
	{"Organization", "org1", "2023-01-01T00:00:00Z", false, []idx{str("name", "acme health", "Acme Health")}},
	{"Organization", "org2", "2023-01-01T00:00:00Z", false, []idx{str("name", "other clinic", "Other Clinic")}},
	{"Observation", "o1", "2024-01-01T00:00:00Z", false, []idx{
		ref("patient", "Patient", "p1"), ref("subject", "Patient", "p1"), tok("code", loinc, "8480-6", "systolic blood pressure"),
		tok("category", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "laboratory"),
		date("date", "2020-01-15T10:00:00Z", "2020-01-15T10:00:00.999999Z"), qty("value-quantity", ucum, "mm[Hg]", "mmHg", 120),
		compQty("code-value-quantity", loinc, "8480-6", ucum, "mm[Hg]", 120), inPatient("p1")}},
	{"Observation", "o2", "2024-06-01T00:00:00Z", false, []idx{
		ref("patient", "Patient", "p1"), ref("subject", "Patient", "p1"), tok("code", loinc, "29463-7", "body weight"),
		tok("category", "http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "vital signs"),
		date("date", "2021-06-01T00:00:00Z", "2021-06-30T23:59:59.999999Z"), qty("value-quantity", ucum, "kg", "kg", 70.5), inPatient("p1")}},
	{"Observation", "o3", "2025-01-01T00:00:00Z", false, []idx{
		ref("patient", "Patient", "p2"), refURL("subject", "Patient", "p2", "https://fhir.example.org/fhir/Patient/p2"), tok("code", loinc, "8480-6", "systolic blood pressure"),
		tok("category", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "laboratory"),
		date("date", "2019-12-31T00:00:00Z", "2020-01-20T23:59:59.999999Z"), qty("value-quantity", ucum, "mm[Hg]", "mmHg", 135),
		compQty("code-value-quantity", loinc, "8480-6", ucum, "mm[Hg]", 135), inPatient("p2")}},
	{"Observation", "o4", "2025-06-01T00:00:00Z", false, []idx{ref("subject", "Group", "g1"), tok("code", "http://other", "8480-6", ""),
		// A reference to another server's Patient/p1 is indexed with its Type/id and its URL.
		refURL("focus", "Patient", "p1", "https://other.example.org/fhir/Patient/p1")}},
	// A deleted resource whose rows were (wrongly) left behind must still never match.
	{"Observation", "o5", "2025-07-01T00:00:00Z", true, []idx{ref("patient", "Patient", "p1"), tok("code", loinc, "8480-6", ""), inPatient("p1")}},
	// Another type with the same parameter codes: never matches an Observation search.
	{"Condition", "c1", "2023-01-01T00:00:00Z", false, []idx{ref("patient", "Patient", "p1"), tok("category", "", "laboratory", ""), inPatient("p1")}},
	{"RiskAssessment", "r1", "2023-01-01T00:00:00Z", false, []idx{num("probability", 0.25)}},
	{"RiskAssessment", "r2", "2023-01-01T00:00:00Z", false, []idx{num("probability", 100)}},
	{"RiskAssessment", "r3", "2023-01-01T00:00:00Z", false, []idx{num("probability", 0.5)}},
	{"ValueSet", "vs1", "2023-01-01T00:00:00Z", false, []idx{uri("url", "http://acme.org/fhir/ValueSet/a")}},
	{"ValueSet", "vs2", "2023-01-01T00:00:00Z", false, []idx{uri("url", "http://acme.org/fhir/ValueSet/a/b")}},
	{"ValueSet", "vs3", "2023-01-01T00:00:00Z", false, []idx{uri("url", "http://other.org/x")}},
	{"Provenance", "prov1", "2023-01-01T00:00:00Z", false, []idx{ref("target", "Observation", "o1")}},
}

func openFixture(t testing.TB) *Store { return openFixtureOn(t, "sqlite") }

// openFixtureOn loads the fixture into a fresh store of driver.
func openFixtureOn(t testing.TB, driver string) *Store {
	t.Helper()
	ctx := context.Background()
	s := OpenTestStore(t, driver, Options{})
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for _, f := range fixture {
			deleted := 0
			var body any = `{"resourceType":"` + f.typ + `","id":"` + f.id + `"}`
			if f.deleted {
				deleted, body = 1, nil
			}
			var pk int64
			if err := tx.QueryRowContext(ctx, `INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ($1, $2, 1, $3, $4, $5) RETURNING pk`,
				f.typ, f.id, mustMicros(f.updated), deleted, body).Scan(&pk); err != nil {
				return err
			}
			for _, r := range f.rows {
				ph := []string{"$1", "$2"}
				for i := range r.cols {
					ph = append(ph, "$"+string(rune('3'+i)))
				}
				stmt := "INSERT INTO " + r.table + " (res_pk, res_type, " + strings.Join(r.cols, ", ") + ") VALUES (" + strings.Join(ph, ", ") + ")"
				if _, err := tx.ExecContext(ctx, stmt, append([]any{pk, f.typ}, r.vals...)...); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testRegistry is built once: building it parses every R4 SearchParameter.
var testRegistry = sync.OnceValues(search.DefaultRegistry)

func fixtureQuery(t testing.TB, types []string, query string) *search.Query {
	t.Helper()
	reg, err := testRegistry()
	if err != nil {
		t.Fatal(err)
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := search.Parse(reg, types, vals, search.ParseOptions{
		BaseURL: "https://fhir.example.org/fhir", Strict: true,
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatalf("Parse(%q): %v", query, err)
	}
	return q
}

func ids(res *search.Result) (matches, included []string) {
	for _, r := range res.Matches {
		matches = append(matches, r.ID)
	}
	for _, r := range res.Included {
		included = append(included, r.ID)
	}
	return matches, included
}

func TestSearchCompiler(t *testing.T) { forEachDriver(t, testSearchCompiler) }

func testSearchCompiler(t *testing.T, driver string) {
	s := openFixtureOn(t, driver)
	tests := []struct {
		typ, query string
		want       []string // matches; sorted unless ordered
		ordered    bool
		compart    string
	}{
		// reference
		{"Observation", "patient=p1", []string{"o1", "o2"}, false, ""},
		{"Observation", "patient=Patient/p1", []string{"o1", "o2"}, false, ""},
		{"Observation", "subject:Patient=p1", []string{"o1", "o2"}, false, ""},
		{"Observation", "subject=Group/g1", []string{"o4"}, false, ""},
		{"Observation", "patient=https://fhir.example.org/fhir/Patient/p2", []string{"o3"}, false, ""},
		{"Observation", "patient=p1,p2", []string{"o1", "o2", "o3"}, false, ""},
		{"Observation", "subject=p2", []string{"o3"}, false, ""},
		{"Observation", "focus=p1", nil, false, ""},
		{"Observation", "focus=Patient/p1", nil, false, ""},
		{"Observation", "focus=https://other.example.org/fhir/Patient/p1", []string{"o4"}, false, ""},
		{"Observation", "patient:missing=true", []string{"o4"}, false, ""},
		{"Patient", "organization:identifier=http://orgids|X1", []string{"p2"}, false, ""},
		{"Patient", "organization:identifier=X1", []string{"p2"}, false, ""},
		{"Patient", "organization:missing=true", []string{"p3"}, false, ""},
		// token
		{"Observation", "code=8480-6", []string{"o1", "o3", "o4"}, false, ""},
		{"Observation", "code=http://loinc.org|8480-6", []string{"o1", "o3"}, false, ""},
		{"Observation", "code=|8480-6", nil, false, ""},
		{"Observation", "code=http://other|", []string{"o4"}, false, ""},
		{"Observation", "code:not=http://loinc.org|8480-6", []string{"o2", "o4"}, false, ""},
		{"Observation", "code:text=blood", []string{"o1", "o3"}, false, ""},
		{"Observation", "code:text=sys", []string{"o1", "o3"}, false, ""},
		{"Observation", "code:text=lood", nil, false, ""},
		{"Observation", "category:missing=true", []string{"o4"}, false, ""},
		{"Observation", "category:missing=false", []string{"o1", "o2", "o3"}, false, ""},
		{"Observation", "category=laboratory,vital-signs", []string{"o1", "o2", "o3"}, false, ""},
		{"Observation", "category=laboratory&category=vital-signs", nil, false, ""},
		{"Observation", "category=laboratory&patient=p1", []string{"o1"}, false, ""},
		{"Observation", "category=laboratory", []string{"o1", "o3"}, false, ""},
		{"Observation", "category:missing=false,false", []string{"o1", "o2", "o3"}, false, ""},
		{"Observation", "category:missing=true,false", []string{"o1", "o2", "o3", "o4"}, false, ""},
		{"Patient", "identifier=http://ids|111", []string{"p1"}, false, ""},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|111", []string{"p1"}, false, ""},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|222", nil, false, ""},
		{"Patient", "gender=male", []string{"p1"}, false, ""},
		// string
		{"Patient", "name=pet", []string{"p1", "p2"}, false, ""},
		{"Patient", "name=PETER", []string{"p1"}, false, ""},
		{"Patient", "name:exact=Peter", []string{"p1"}, false, ""},
		{"Patient", "name:exact=peter", nil, false, ""},
		{"Patient", "name:contains=alm", []string{"p1"}, false, ""},
		{"Patient", "name:contains=%25", nil, false, ""},
		{"Patient", "name=pet&name=smi", []string{"p2"}, false, ""},
		// date
		{"Observation", "date=2020-01-15", []string{"o1"}, false, ""},
		{"Observation", "date=2020", []string{"o1"}, false, ""},
		{"Observation", "date=gt2020-01-16", []string{"o2", "o3"}, false, ""},
		{"Observation", "date=lt2020-01-01", []string{"o3"}, false, ""},
		{"Observation", "date=ge2020-01-15", []string{"o1", "o2", "o3"}, false, ""},
		{"Observation", "date=le2020-01-15", []string{"o1", "o3"}, false, ""},
		{"Observation", "date=sa2020-01-20", []string{"o2"}, false, ""},
		{"Observation", "date=eb2020-01-01", nil, false, ""},
		{"Observation", "date=eb2021-01-01", []string{"o1", "o3"}, false, ""},
		{"Observation", "date=ne2020-01-15", []string{"o2", "o3"}, false, ""},
		{"Observation", "date=ap2020-01-15", []string{"o1", "o3"}, false, ""},
		{"Observation", "date=2020-01-15T10:00:00Z", []string{"o1"}, false, ""},
		{"Observation", "date=2020-01-15T11:00:00%2B01:00", []string{"o1"}, false, ""},
		{"Patient", "birthdate=1980", []string{"p2"}, false, ""},
		{"Patient", "birthdate=1980-03-15", nil, false, ""},
		{"Patient", "birthdate:missing=true", []string{"p3"}, false, ""},
		{"Observation", "_lastUpdated=ge2025", []string{"o3", "o4"}, false, ""},
		{"Observation", "_lastUpdated=lt2024-06", []string{"o1"}, false, ""},
		// quantity
		{"Observation", "value-quantity=120", []string{"o1"}, false, ""},
		{"Observation", "value-quantity=gt120", []string{"o3"}, false, ""},
		{"Observation", "value-quantity=ge120", []string{"o1", "o3"}, false, ""},
		{"Observation", "value-quantity=lt100", []string{"o2"}, false, ""},
		{"Observation", "value-quantity=le70.5", []string{"o2"}, false, ""},
		{"Observation", "value-quantity=ne120", []string{"o2", "o3"}, false, ""},
		{"Observation", "value-quantity=ap130", []string{"o1", "o3"}, false, ""},
		{"Observation", "value-quantity=1.2e2", []string{"o1"}, false, ""},
		{"Observation", "value-quantity=120|http://unitsofmeasure.org|mm[Hg]", []string{"o1"}, false, ""},
		{"Observation", "value-quantity=120|http://unitsofmeasure.org|kg", nil, false, ""},
		{"Observation", "value-quantity=70.5||kg", []string{"o2"}, false, ""},
		{"Observation", "value-quantity=135||mmHg", []string{"o3"}, false, ""},
		// number
		{"RiskAssessment", "probability=0.25", []string{"r1"}, false, ""},
		{"RiskAssessment", "probability=100", []string{"r2"}, false, ""},
		{"RiskAssessment", "probability=gt0.3", []string{"r2", "r3"}, false, ""},
		{"RiskAssessment", "probability=1e2", []string{"r2"}, false, ""},
		{"RiskAssessment", "probability=ap0.5", []string{"r3"}, false, ""},
		{"RiskAssessment", "probability=ne0.5", []string{"r1", "r2"}, false, ""},
		{"RiskAssessment", "probability=0.5", []string{"r3"}, false, ""},
		{"RiskAssessment", "probability=0.4", nil, false, ""},
		// uri
		{"ValueSet", "url=http://acme.org/fhir/ValueSet/a", []string{"vs1"}, false, ""},
		{"ValueSet", "url:below=http://acme.org/fhir", []string{"vs1", "vs2"}, false, ""},
		{"ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/b/c", []string{"vs1", "vs2"}, false, ""},
		// composite
		{"Observation", "code-value-quantity=http://loinc.org|8480-6$gt125", []string{"o3"}, false, ""},
		{"Observation", "code-value-quantity=8480-6$lt125", []string{"o1"}, false, ""},
		{"Observation", "code-value-quantity=8480-6$lt125|http://unitsofmeasure.org|kg", nil, false, ""},
		// _id, compartment, system search
		{"Observation", "_id=o1,o3,o5", []string{"o1", "o3"}, false, ""},
		{"Observation", "", []string{"o1", "o2"}, false, "p1"},
		{"Observation", "category=laboratory", []string{"o1"}, false, "p1"},
		{"Observation", "patient=p2", nil, false, "p1"},
		// chains
		{"Observation", "patient.name=pet", []string{"o1", "o2", "o3"}, false, ""},
		{"Observation", "patient.name=peter", []string{"o1", "o2"}, false, ""},
		{"Observation", "subject:Patient.name=petra", []string{"o3"}, false, ""},
		{"Observation", "patient.organization.name=acme", []string{"o1", "o2"}, false, ""},
		{"Observation", "patient.organization.name:exact=Other Clinic", []string{"o3"}, false, ""},
		{"Observation", "patient.name=peter&code=http://loinc.org|8480-6", []string{"o1"}, false, ""},
		{"Observation", "patient._id=p2", []string{"o3"}, false, ""},
		{"Observation", "focus:Patient.name=peter", nil, false, ""},
		{"Patient", "_has:Observation:focus:_id=o4", nil, false, ""},
		{"Patient", "_has:Observation:subject:_id=o3", []string{"p2"}, false, ""},
		// reverse chains
		{"Patient", "_has:Observation:patient:code=8480-6", []string{"p1", "p2"}, false, ""},
		{"Patient", "_has:Observation:patient:category=vital-signs", []string{"p1"}, false, ""},
		{"Patient", "_has:Observation:patient:category=vital-signs&name=pet", []string{"p1"}, false, ""},
		{"Patient", "_has:Observation:patient:_has:Provenance:target:_id=prov1", []string{"p1"}, false, ""},
		{"Observation", "_has:Provenance:target:_id=prov1", []string{"o1"}, false, ""},
		// sorting (missing values sort lowest)
		{"Observation", "_sort=date", []string{"o4", "o3", "o1", "o2"}, true, ""},
		{"Observation", "_sort=-date", []string{"o2", "o3", "o1", "o4"}, true, ""},
		{"Observation", "_sort=code,-date", []string{"o2", "o3", "o1", "o4"}, true, ""},
		{"Observation", "_sort=-_id", []string{"o4", "o3", "o2", "o1"}, true, ""},
		{"Observation", "_sort=-_lastUpdated", []string{"o4", "o3", "o2", "o1"}, true, ""},
		{"Patient", "_sort=name", []string{"p3", "p1", "p2"}, true, ""},
		{"Patient", "_sort=-name", []string{"p2", "p1", "p3"}, true, ""},
		{"Observation", "_sort=value-quantity", []string{"o4", "o2", "o1", "o3"}, true, ""},
		{"Observation", "_sort=patient", []string{"o4", "o1", "o2", "o3"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"?"+tt.query+"@"+tt.compart, func(t *testing.T) {
			q := fixtureQuery(t, []string{tt.typ}, tt.query)
			if tt.compart != "" {
				q.Compartment = &search.CompartmentRef{Type: "Patient", ID: tt.compart}
			}
			res, err := s.search(context.Background(), s.read, q)
			if err != nil {
				t.Fatalf("search: %v", err)
			}
			got, _ := ids(res)
			want := slices.Clone(tt.want)
			if !tt.ordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s?%s = %v, want %v", tt.typ, tt.query, got, want)
			}
			if res.Total == nil || *res.Total != len(want) {
				t.Errorf("Total = %v, want %d (a single page)", res.Total, len(want))
			}
			pks, err := s.matchIDs(context.Background(), s.read, q, 100)
			if err != nil || len(pks) != len(want) {
				t.Errorf("matchIDs = %v, %v, want %d", pks, err, len(want))
			}
		})
	}
}

func TestSearchSystem(t *testing.T) { forEachDriver(t, testSearchSystem) }

func testSearchSystem(t *testing.T, driver string) {
	s := openFixtureOn(t, driver)
	q := fixtureQuery(t, []string{"Observation", "Patient"}, "_id=o1,p1,org1")
	res, err := s.search(context.Background(), s.read, q)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := ids(res)
	slices.Sort(got)
	if !slices.Equal(got, []string{"o1", "p1"}) {
		t.Errorf("system search = %v, want [o1 p1]", got)
	}
}

func TestSearchIncludes(t *testing.T) { forEachDriver(t, testSearchIncludes) }

func testSearchIncludes(t *testing.T, driver string) {
	s := openFixtureOn(t, driver)
	tests := []struct {
		typ, query string
		matches    []string
		included   []string
	}{
		{"Observation", "_id=o1&_include=Observation:patient", []string{"o1"}, []string{"p1"}},
		{"Observation", "_id=o1&_include=*", []string{"o1"}, []string{"p1"}},
		{"Observation", "_id=o4&_include=*", []string{"o4"}, nil},
		{"Observation", "_id=o3&_include=Observation:subject", []string{"o3"}, []string{"p2"}},
		{"Observation", "code=8480-6&_include=Observation:subject", []string{"o1", "o3", "o4"}, []string{"p1", "p2"}},
		{"Observation", "code=8480-6&_include=Observation:subject:Group", []string{"o1", "o3", "o4"}, nil},
		{"Observation", "_id=o1,o3&_include=Observation:patient&_include:iterate=Patient:organization", []string{"o1", "o3"}, []string{"org1", "org2", "p1", "p2"}},
		{"Observation", "_id=o1,o3&_include=Observation:patient&_include=Patient:organization", []string{"o1", "o3"}, []string{"p1", "p2"}},
		{"Observation", "_id=o1&_revinclude=Provenance:target", []string{"o1"}, []string{"prov1"}},
		{"Patient", "_id=p1&_revinclude=Observation:patient", []string{"p1"}, []string{"o1", "o2"}},
		{"Patient", "name=pet&_revinclude=Observation:patient&_include:iterate=Observation:patient", []string{"p1", "p2"}, []string{"o1", "o2", "o3"}},
		{"Patient", "_id=p1&_revinclude:iterate=Observation:patient&_revinclude:iterate=Provenance:target", []string{"p1"}, []string{"o1", "o2", "prov1"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			res, err := s.search(context.Background(), s.read, fixtureQuery(t, []string{tt.typ}, tt.query))
			if err != nil {
				t.Fatal(err)
			}
			m, inc := ids(res)
			slices.Sort(m)
			slices.Sort(inc)
			if !slices.Equal(m, tt.matches) || !slices.Equal(inc, tt.included) {
				t.Errorf("%s?%s = %v + %v, want %v + %v", tt.typ, tt.query, m, inc, tt.matches, tt.included)
			}
		})
	}
}

// TestSearchPaging walks every page of several orders: each match exactly once, in order.
func TestSearchPaging(t *testing.T) { forEachDriver(t, testSearchPaging) }

func testSearchPaging(t *testing.T, driver string) {
	s := openFixtureOn(t, driver)
	for _, tt := range []struct {
		typ, query string
	}{
		{"Observation", "_sort=code,-date"},
		{"Observation", "_sort=date"},
		{"Observation", "_sort=-value-quantity"},
		{"Observation", ""},
		{"Patient", "_sort=-name"},
		{"Patient", "_sort=birthdate,name"},
	} {
		for _, count := range []int{1, 2, 3} {
			t.Run(tt.typ+"?"+tt.query, func(t *testing.T) {
				full, err := s.search(context.Background(), s.read, fixtureQuery(t, []string{tt.typ}, tt.query))
				if err != nil {
					t.Fatal(err)
				}
				want, _ := ids(full)
				var got []string
				q := fixtureQuery(t, []string{tt.typ}, tt.query)
				q.Count = count
				for page := 0; ; page++ {
					if page > len(want) {
						t.Fatalf("more pages than matches")
					}
					res, err := s.search(context.Background(), s.read, q)
					if err != nil {
						t.Fatal(err)
					}
					m, _ := ids(res)
					if len(m) > count {
						t.Fatalf("page of %d, want at most %d", len(m), count)
					}
					if page > 0 && res.Total != nil {
						t.Errorf("Total on a later page without _total=accurate")
					}
					got = append(got, m...)
					if res.Next == "" {
						break
					}
					q.Cursor = res.Next
				}
				if !slices.Equal(got, want) {
					t.Errorf("pages of %d = %v, want %v", count, got, want)
				}
			})
		}
	}
}

func TestSearchTotals(t *testing.T) { forEachDriver(t, testSearchTotals) }

func testSearchTotals(t *testing.T, driver string) {
	s := openFixtureOn(t, driver)
	ctx := context.Background()
	for _, tt := range []struct {
		query   string
		total   int // -1: none
		matches int
	}{
		{"_count=1&_total=accurate", 4, 1},
		{"_count=1", -1, 1},
		{"", 4, 4},
		{"_total=none", -1, 4},
		{"_summary=count", 4, 0},
		{"_count=0&code=8480-6", 3, 0},
	} {
		res, err := s.search(ctx, s.read, fixtureQuery(t, []string{"Observation"}, tt.query))
		if err != nil {
			t.Fatal(err)
		}
		total := -1
		if res.Total != nil {
			total = *res.Total
		}
		if total != tt.total || len(res.Matches) != tt.matches {
			t.Errorf("Observation?%s: total %d, %d matches, want %d, %d", tt.query, total, len(res.Matches), tt.total, tt.matches)
		}
	}
}

func TestSearchBadCursor(t *testing.T) { forEachDriver(t, testSearchBadCursor) }

func testSearchBadCursor(t *testing.T, driver string) {
	s := openFixtureOn(t, driver)
	for _, c := range []string{"x", "eyJwIjowfQ", "eyJwIjoxLCJ2IjpbImkxIiwiaTIiXX0", "eyJwIjoxLCJ2IjpbInoxIl19"} {
		q := fixtureQuery(t, []string{"Observation"}, "_sort=date")
		q.Cursor = c
		if _, err := s.search(context.Background(), s.read, q); err == nil {
			t.Errorf("cursor %q accepted", c)
		}
	}
}

// FuzzSearchSQL runs whatever Parse accepts against the fixture: the compiled SQL must always
// run, so every failure is a 400 *fhir.Error (a bad cursor), never a database error.
func FuzzSearchSQL(f *testing.F) {
	for _, seed := range []string{
		"patient=p1&category=laboratory", "code:not=http://loinc.org|8480-6", "date=ap2020-01-15&_sort=-date",
		"patient.organization.name=acme", "_has:Observation:patient:_has:Provenance:target:_id=prov1",
		"value-quantity=ap130||mmHg", "code-value-quantity=8480-6$lt125|http://unitsofmeasure.org|kg",
		"_include:iterate=*&_revinclude=Provenance:target&_sort=code,-_lastUpdated&_count=1",
		"category:missing=true,false&_total=accurate", "name:contains=%25_\\",
	} {
		f.Add("Observation", seed, "")
	}
	f.Add("Patient", "name=pet&_sort=-name&_count=1", "eyJwIjoxLCJ2IjpbInNwZXRlciJdfQ")
	s := openFixture(f)
	reg, err := testRegistry()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, query, cursor string) {
		if !slices.Contains([]string{"Observation", "Patient", "Organization", "RiskAssessment", "ValueSet", "Provenance", "Condition"}, typ) {
			typ = "Observation"
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q, _, err := search.Parse(reg, []string{typ}, vals, search.ParseOptions{BaseURL: "https://fhir.example.org/fhir"})
		if err != nil {
			return
		}
		q.Cursor = cursor
		if _, err := s.search(context.Background(), s.read, q); err != nil {
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest {
				t.Fatalf("search %s?%s (cursor %q): %v", typ, query, cursor, err)
			}
		}
		if _, err := s.matchIDs(context.Background(), s.read, q, 2); err != nil {
			t.Fatalf("matchIDs %s?%s: %v", typ, query, err)
		}
	})
}
