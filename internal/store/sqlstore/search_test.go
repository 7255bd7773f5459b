package sqlstore_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// searchResources are written through the Backend (Update with chosen ids), so the index rows
// are the ones extraction really writes. The expectations below are checked by hand against them.
var searchResources = []struct{ typ, id, body string }{
	{"Organization", "org-1", `{"resourceType":"Organization","name":"Acme Health"}`},
	{"Organization", "org-2", `{"resourceType":"Organization","name":"Other Clinic"}`},
	{"Patient", "pat-1", `{"resourceType":"Patient","name":[{"family":"Chalmers","given":["Peter","James"]}],"gender":"male","birthDate":"1974-12-25",
		"identifier":[{"system":"http://ids","value":"111","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}],
		"managingOrganization":{"reference":"Organization/org-1"}}`},
	{"Patient", "pat-2", `{"resourceType":"Patient","name":[{"family":"Müller","given":["Petra"]}],"gender":"female","birthDate":"1980-03",
		"identifier":[{"system":"http://ids","value":"222"}],"managingOrganization":{"reference":"Organization/org-2"}}`},
	{"Patient", "pat-3", `{"resourceType":"Patient","name":[{"given":["Anne"]}]}`},
	{"Observation", "obs-1", `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
		"subject":{"reference":"Patient/pat-1"},"effectiveDateTime":"2020-01-15T10:00:00Z",
		"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`},
	{"Observation", "obs-2", `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},
		"subject":{"reference":"Patient/pat-1"},"effectiveDateTime":"2021-06",
		"valueQuantity":{"value":70.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`},
	{"Observation", "obs-3", `{"resourceType":"Observation","status":"amended",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
		"subject":{"reference":"Patient/pat-2"},"effectivePeriod":{"start":"2019-12-31","end":"2020-01-20"},
		"valueQuantity":{"value":135,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`},
	{"Observation", "obs-4", `{"resourceType":"Observation","status":"preliminary",
		"code":{"coding":[{"system":"http://other","code":"8480-6"}]},"subject":{"reference":"Group/g-1"},
		"focus":[{"reference":"https://other.example.org/fhir/Patient/pat-1"}]}`},
	{"Observation", "obs-5", `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
		"subject":{"reference":"Patient/pat-1"}}`},
	{"RiskAssessment", "ra-1", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/pat-1"},"prediction":[{"probabilityDecimal":0.25}]}`},
	{"RiskAssessment", "ra-2", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/pat-2"},"prediction":[{"probabilityDecimal":100}]}`},
	{"ValueSet", "vs-1", `{"resourceType":"ValueSet","status":"active","url":"http://acme.org/fhir/ValueSet/a"}`},
	{"ValueSet", "vs-2", `{"resourceType":"ValueSet","status":"active","url":"http://acme.org/fhir/ValueSet/a/b"}`},
	{"ValueSet", "vs-3", `{"resourceType":"ValueSet","status":"active","url":"http://other.org/x"}`},
	{"Provenance", "prov-1", `{"resourceType":"Provenance","recorded":"2020-01-15T10:00:00Z","target":[{"reference":"Observation/obs-1"}],
		"agent":[{"who":{"reference":"Organization/org-1"}}]}`},
}

var searchRegistry = sync.OnceValues(search.DefaultRegistry)

func loadSearchStore(t *testing.T, driver string) *sqlstore.Store {
	t.Helper()
	s := openDriver(t, driver)
	ctx := context.Background()
	for _, r := range searchResources {
		if _, _, err := s.Update(ctx, r.typ, r.id, []byte(r.body), backend.UpdateOptions{}); err != nil {
			t.Fatalf("Update %s/%s: %v", r.typ, r.id, err)
		}
	}
	if _, err := s.Delete(ctx, "Observation", "obs-5"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	return s
}

func parseSearch(t *testing.T, typ, query string) *search.Query {
	t.Helper()
	reg, err := searchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := search.Parse(reg, []string{typ}, vals, search.ParseOptions{
		BaseURL: "https://fhir.example.org/fhir", Strict: true,
		Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatalf("Parse(%s?%s): %v", typ, query, err)
	}
	return q
}

func resultIDs(rs []*fhir.Resource) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestSearchThroughBackend(t *testing.T) { forEachDriver(t, testSearchThroughBackend) }

func testSearchThroughBackend(t *testing.T, driver string) {
	s := loadSearchStore(t, driver)
	ctx := context.Background()
	tests := []struct {
		typ, query string
		want       []string
		ordered    bool
	}{
		// string
		{"Patient", "name=pet", []string{"pat-1", "pat-2"}, false},
		{"Patient", "name=MULLER", []string{"pat-2"}, false},
		{"Patient", "name=müll", []string{"pat-2"}, false},
		{"Patient", "name:exact=Müller", []string{"pat-2"}, false},
		{"Patient", "name:exact=muller", []string{}, false},
		{"Patient", "name:contains=alm", []string{"pat-1"}, false},
		{"Patient", "family=chal&given=james", []string{"pat-1"}, false},
		{"Organization", "name=acme", []string{"org-1"}, false},
		// token
		{"Patient", "gender=male", []string{"pat-1"}, false},
		{"Patient", "gender:not=male", []string{"pat-2", "pat-3"}, false},
		{"Patient", "identifier=http://ids|222", []string{"pat-2"}, false},
		{"Patient", "identifier=111", []string{"pat-1"}, false},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|111", []string{"pat-1"}, false},
		{"Observation", "code=http://loinc.org|8480-6", []string{"obs-1", "obs-3"}, false},
		{"Observation", "code=8480-6", []string{"obs-1", "obs-3", "obs-4"}, false},
		// Four or more system|code values compile to one code IN list per system.
		{"Observation", "code=http://loinc.org|8480-6,http://other|8480-6,http://loinc.org|29463-7,http://x|y", []string{"obs-1", "obs-2", "obs-3", "obs-4"}, false},
		{"Observation", "code=http://x|8480-6,http://loinc.org|8480-7,http://other|29463-7,http://x|y", []string{}, false},
		{"Observation", "code:not=http://loinc.org|8480-6,http://other|8480-6,http://x|y,http://x|z", []string{"obs-2"}, false},
		{"Observation", "code=8480-6,http://loinc.org|29463-7,http://x|y,http://x|z", []string{"obs-1", "obs-2", "obs-3", "obs-4"}, false},
		{"Observation", "code:text=systolic", []string{"obs-1", "obs-3"}, false},
		{"Observation", "code:text=weight", []string{"obs-2"}, false},
		{"Observation", "category:missing=true", []string{"obs-4"}, false},
		{"Observation", "status=final,amended", []string{"obs-1", "obs-2", "obs-3"}, false},
		{"Observation", "_id=obs-1,obs-5", []string{"obs-1"}, false},
		// reference
		{"Observation", "patient=pat-1", []string{"obs-1", "obs-2"}, false},
		{"Observation", "patient=Patient/pat-2", []string{"obs-3"}, false},
		{"Observation", "subject=https://fhir.example.org/fhir/Patient/pat-2", []string{"obs-3"}, false},
		{"Observation", "subject:Group=g-1", []string{"obs-4"}, false},
		{"Observation", "focus=Patient/pat-1", []string{}, false},
		{"Observation", "focus=https://other.example.org/fhir/Patient/pat-1", []string{"obs-4"}, false},
		{"Patient", "organization=Organization/org-1", []string{"pat-1"}, false},
		{"Patient", "organization:missing=true", []string{"pat-3"}, false},
		// date
		{"Observation", "date=2020-01-15", []string{"obs-1"}, false},
		{"Observation", "date=gt2020-01-16", []string{"obs-2", "obs-3"}, false},
		{"Observation", "date=le2020-01-15", []string{"obs-1", "obs-3"}, false},
		{"Observation", "date=sa2020-01-20", []string{"obs-2"}, false},
		{"Observation", "date=eb2021-01-01", []string{"obs-1", "obs-3"}, false},
		{"Observation", "date=ap2020-01-15", []string{"obs-1", "obs-3"}, false},
		{"Patient", "birthdate=1980", []string{"pat-2"}, false},
		{"Patient", "birthdate=lt1975", []string{"pat-1"}, false},
		{"Patient", "birthdate:missing=true", []string{"pat-3"}, false},
		// quantity and number
		{"Observation", "value-quantity=120", []string{"obs-1"}, false},
		{"Observation", "value-quantity=gt100|http://unitsofmeasure.org|mm[Hg]", []string{"obs-1", "obs-3"}, false},
		{"Observation", "value-quantity=70.5||kg", []string{"obs-2"}, false},
		{"Observation", "value-quantity=ap130", []string{"obs-1", "obs-3"}, false},
		{"Observation", "code-value-quantity=http://loinc.org|8480-6$gt125", []string{"obs-3"}, false},
		{"RiskAssessment", "probability=gt0.5", []string{"ra-2"}, false},
		{"RiskAssessment", "probability=0.25", []string{"ra-1"}, false},
		// uri
		{"ValueSet", "url=http://acme.org/fhir/ValueSet/a", []string{"vs-1"}, false},
		{"ValueSet", "url:below=http://acme.org/fhir", []string{"vs-1", "vs-2"}, false},
		{"ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/b/c", []string{"vs-1", "vs-2"}, false},
		// chains and reverse chains
		{"Observation", "patient.name=peter", []string{"obs-1", "obs-2"}, false},
		{"Observation", "subject:Patient.birthdate=1980", []string{"obs-3"}, false},
		{"Observation", "patient.organization.name=acme", []string{"obs-1", "obs-2"}, false},
		{"Patient", "_has:Observation:patient:code=http://loinc.org|8480-6", []string{"pat-1", "pat-2"}, false},
		{"Patient", "_has:Observation:patient:category=vital-signs", []string{"pat-1"}, false},
		{"Observation", "_has:Provenance:target:agent=Organization/org-1", []string{"obs-1"}, false},
		// sorting
		{"Observation", "_sort=-date", []string{"obs-2", "obs-3", "obs-1", "obs-4"}, true},
		{"Observation", "_sort=code,-date", []string{"obs-2", "obs-3", "obs-1", "obs-4"}, true},
		{"Patient", "_sort=birthdate", []string{"pat-3", "pat-1", "pat-2"}, true},
		{"Patient", "_sort=-_id", []string{"pat-3", "pat-2", "pat-1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"?"+tt.query, func(t *testing.T) {
			res, err := s.Search(ctx, parseSearch(t, tt.typ, tt.query))
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			got := resultIDs(res.Matches)
			want := slices.Clone(tt.want)
			if !tt.ordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s?%s = %v, want %v", tt.typ, tt.query, got, want)
			}
		})
	}
}

func TestSearchIncludesThroughBackend(t *testing.T) {
	forEachDriver(t, testSearchIncludesThroughBackend)
}

func testSearchIncludesThroughBackend(t *testing.T, driver string) {
	s := loadSearchStore(t, driver)
	ctx := context.Background()
	tests := []struct {
		typ, query        string
		matches, included []string
	}{
		{"Observation", "_id=obs-1&_include=Observation:patient", []string{"obs-1"}, []string{"pat-1"}},
		{"Observation", "_id=obs-4&_include=*", []string{"obs-4"}, []string{}},
		{"Observation", "code=http://loinc.org|8480-6&_include=Observation:subject&_include:iterate=Patient:organization",
			[]string{"obs-1", "obs-3"}, []string{"org-1", "org-2", "pat-1", "pat-2"}},
		{"Patient", "_id=pat-1&_revinclude=Observation:subject", []string{"pat-1"}, []string{"obs-1", "obs-2"}},
		{"Patient", "_id=pat-1&_revinclude=Observation:subject&_revinclude:iterate=Provenance:target", []string{"pat-1"}, []string{"obs-1", "obs-2", "prov-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			res, err := s.Search(ctx, parseSearch(t, tt.typ, tt.query))
			if err != nil {
				t.Fatal(err)
			}
			m, inc := resultIDs(res.Matches), resultIDs(res.Included)
			slices.Sort(m)
			slices.Sort(inc)
			if !slices.Equal(m, tt.matches) || !slices.Equal(inc, tt.included) {
				t.Errorf("%s?%s = %v + %v, want %v + %v", tt.typ, tt.query, m, inc, tt.matches, tt.included)
			}
		})
	}
}

// TestSearchPagingThroughBackend walks every page: no duplicates, nothing missing, in order.
func TestSearchPagingThroughBackend(t *testing.T) { forEachDriver(t, testSearchPagingThroughBackend) }

func testSearchPagingThroughBackend(t *testing.T, driver string) {
	s := loadSearchStore(t, driver)
	ctx := context.Background()
	for _, query := range []string{"_sort=-date", "_sort=code,-_lastUpdated", "", "status=final,amended,preliminary&_sort=status"} {
		full, err := s.Search(ctx, parseSearch(t, "Observation", query))
		if err != nil {
			t.Fatal(err)
		}
		want := resultIDs(full.Matches)
		if len(want) != 4 {
			t.Fatalf("Observation?%s = %v, want the 4 live observations", query, want)
		}
		for _, count := range []int{1, 3} {
			q := parseSearch(t, "Observation", query)
			q.Count = count
			var got []string
			for page := 0; ; page++ {
				if page > len(want) {
					t.Fatalf("Observation?%s: more pages than matches", query)
				}
				res, err := s.Search(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, resultIDs(res.Matches)...)
				if res.Next == "" {
					break
				}
				q.Cursor = res.Next
			}
			if !slices.Equal(got, want) {
				t.Errorf("Observation?%s pages of %d = %v, want %v", query, count, got, want)
			}
		}
	}
}

func TestConditionalCreateUsesSearch(t *testing.T) { forEachDriver(t, testConditionalCreateUsesSearch) }

func testConditionalCreateUsesSearch(t *testing.T, driver string) {
	s := loadSearchStore(t, driver)
	ctx := context.Background()
	res, created, err := s.Create(ctx, "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{IfNoneExist: parseSearch(t, "Patient", "identifier=http://ids|111")})
	if err != nil || created || res.ID != "pat-1" {
		t.Errorf("conditional create on a match = %v, created %v, %v; want pat-1", res, created, err)
	}
	_, _, err = s.Create(ctx, "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{IfNoneExist: parseSearch(t, "Patient", "identifier=http://ids|")})
	if !errors.Is(err, fhir.ErrMultipleMatches) {
		t.Errorf("conditional create on two matches: %v, want ErrMultipleMatches", err)
	}
	_, created, err = s.Create(ctx, "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{IfNoneExist: parseSearch(t, "Patient", "identifier=http://ids|999")})
	if err != nil || !created {
		t.Errorf("conditional create without a match: created %v, %v", created, err)
	}
}

func TestCompartmentSearchThroughBackend(t *testing.T) {
	forEachDriver(t, testCompartmentSearchThroughBackend)
}

func testCompartmentSearchThroughBackend(t *testing.T, driver string) {
	s := loadSearchStore(t, driver)
	ctx := context.Background()
	for _, tt := range []struct {
		typ, query, patient string
		want                []string
	}{
		{"Observation", "", "pat-1", []string{"obs-1", "obs-2"}},
		{"Observation", "category=laboratory", "pat-1", []string{"obs-1"}},
		{"Observation", "", "pat-2", []string{"obs-3"}},
		{"Observation", "patient=pat-2", "pat-1", []string{}},
		{"RiskAssessment", "", "pat-1", []string{"ra-1"}},
		{"Organization", "", "pat-1", []string{}},
	} {
		q := parseSearch(t, tt.typ, tt.query)
		q.Compartment = &search.CompartmentRef{Type: "Patient", ID: tt.patient}
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got := resultIDs(res.Matches)
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("Patient/%s/%s?%s = %v, want %v", tt.patient, tt.typ, tt.query, got, tt.want)
		}
	}
}
