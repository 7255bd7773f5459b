package search_test

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

var (
	regOnce sync.Once
	reg     *search.Registry
)

func registry(t testing.TB) *search.Registry {
	t.Helper()
	regOnce.Do(func() {
		var err error
		if reg, err = search.DefaultRegistry(); err != nil {
			panic(err)
		}
	})
	return reg
}

var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func opts() search.ParseOptions {
	return search.ParseOptions{BaseURL: "https://fhir.example.org/fhir", DefaultCount: 20, MaxCount: 100, Now: func() time.Time { return testNow }}
}

func micros(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMicro()
}

func parseOne(t *testing.T, typ, query string) (*search.Query, []string, error) {
	t.Helper()
	vals, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("ParseQuery(%q): %v", query, err)
	}
	return search.Parse(registry(t), []string{typ}, vals, opts())
}

// TestParseValues checks the typed value of one clause.
func TestParseValues(t *testing.T) {
	tests := []struct {
		typ, query string
		mod        string
		want       []search.Value // compared on the fields set in want (zero fields are ignored)
	}{
		{"Patient", "name=Jos%C3%A9", "", []search.Value{{Raw: "José", Text: "jose"}}},
		{"Patient", "name=%20%20M%C3%9CLLER%20%20Hans", "", []search.Value{{Text: "muller hans"}}},
		{"Patient", "name:exact=Jos%C3%A9", "exact", []search.Value{{Raw: "José"}}},
		{"Patient", "name=a,b", "", []search.Value{{Raw: "a", Text: "a"}, {Raw: "b", Text: "b"}}},
		{"Patient", `name=a\,b`, "", []search.Value{{Raw: "a,b", Text: "a,b"}}},
		{"Patient", `name=a\\,b`, "", []search.Value{{Raw: `a\`}, {Raw: "b"}}},
		{"Observation", "code=1234-5", "", []search.Value{{Code: "1234-5"}}},
		{"Observation", "code=http://loinc.org|1234-5", "", []search.Value{{System: "http://loinc.org", Code: "1234-5", HasSystem: true}}},
		{"Observation", "code=|1234-5", "", []search.Value{{Code: "1234-5", HasSystem: true}}},
		{"Observation", "code=http://loinc.org|", "", []search.Value{{System: "http://loinc.org", HasSystem: true}}},
		{"Observation", `code=a\|b`, "", []search.Value{{Code: "a|b"}}},
		{"Observation", "code:not=x", "not", []search.Value{{Code: "x"}}},
		{"Observation", "code:text=Body%20Weight", "text", []search.Value{{Text: "body weight"}}},
		{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053", "of-type",
			[]search.Value{{System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "MR", Identifier: "446053", HasSystem: true}}},
		{"Observation", "code:missing=true", "missing", []search.Value{{Raw: "true", Missing: true}}},
		{"Observation", "code:missing=false", "missing", []search.Value{{Raw: "false"}}},
		{"Observation", "patient=123", "", []search.Value{{RefID: "123"}}},
		{"Observation", "patient=Patient/123", "", []search.Value{{RefType: "Patient", RefID: "123"}}},
		{"Observation", "patient=Patient/123/_history/2", "", []search.Value{{RefType: "Patient", RefID: "123"}}},
		{"Observation", "subject:Patient=123", "Patient", []search.Value{{RefType: "Patient", RefID: "123"}}},
		{"Observation", "subject=https://fhir.example.org/fhir/Patient/123", "", []search.Value{{RefType: "Patient", RefID: "123"}}},
		{"Observation", "subject=https://other.example.org/fhir/Patient/123", "", []search.Value{{RefURL: "https://other.example.org/fhir/Patient/123"}}},
		{"Observation", "subject:identifier=http://ids|42", "identifier", []search.Value{{System: "http://ids", Code: "42", HasSystem: true}}},
		{"Observation", "date=2013", "", []search.Value{{Prefix: "eq", Low: micros("2013-01-01T00:00:00Z"), High: micros("2013-12-31T23:59:59.999999Z")}}},
		{"Observation", "date=2013-02", "", []search.Value{{Prefix: "eq", Low: micros("2013-02-01T00:00:00Z"), High: micros("2013-02-28T23:59:59.999999Z")}}},
		{"Observation", "date=ge2013-02-03", "", []search.Value{{Prefix: "ge", Low: micros("2013-02-03T00:00:00Z"), High: micros("2013-02-03T23:59:59.999999Z")}}},
		{"Observation", "date=lt2013-02-03T10:00", "", []search.Value{{Prefix: "lt", Low: micros("2013-02-03T10:00:00Z"), High: micros("2013-02-03T10:00:59.999999Z")}}},
		{"Observation", "date=2013-02-03T10:00:00%2B02:00", "", []search.Value{{Prefix: "eq", Low: micros("2013-02-03T08:00:00Z"), High: micros("2013-02-03T08:00:00.999999Z")}}},
		// An unencoded '+' arrives as a space.
		{"Observation", "date=2013-02-03T10:00:00+02:00", "", []search.Value{{Prefix: "eq", Low: micros("2013-02-03T08:00:00Z")}}},
		{"Observation", "date=2013-02-03T10:00:00.5Z", "", []search.Value{{Low: micros("2013-02-03T10:00:00.5Z"), High: micros("2013-02-03T10:00:00.599999Z")}}},
		{"Observation", "date=sa2013,eb2010", "", []search.Value{{Prefix: "sa"}, {Prefix: "eb"}}},
		// ap widens by 10% of the distance to now (2026-01-01): 2016 is ~10 years away, ~1 year.
		{"Observation", "date=ap2016-01-01", "", []search.Value{{Prefix: "ap", Low: micros("2015-01-01T00:00:00Z") - 12*3600e6 + 3, High: 0}}},
		{"RiskAssessment", "probability=100", "", []search.Value{{Prefix: "eq", Number: 100, NumLow: 99.5, NumHigh: 100.5}}},
		{"RiskAssessment", "probability=0.25", "", []search.Value{{Prefix: "eq", Number: 0.25, NumLow: 0.245, NumHigh: 0.255}}},
		{"RiskAssessment", "probability=1e2", "", []search.Value{{Number: 100, NumLow: 50, NumHigh: 150}}},
		{"RiskAssessment", "probability=gt-5", "", []search.Value{{Prefix: "gt", Number: -5}}},
		{"RiskAssessment", "probability=ap100", "", []search.Value{{Prefix: "ap", Number: 100, NumLow: 90, NumHigh: 110}}},
		{"Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg", "", []search.Value{{Prefix: "eq", Number: 5.4, System: "http://unitsofmeasure.org", Code: "mg", HasSystem: true}}},
		{"Observation", "value-quantity=le5.4||mg", "", []search.Value{{Prefix: "le", Number: 5.4, Code: "mg"}}},
		{"Observation", "value-quantity=5.4", "", []search.Value{{Number: 5.4}}},
		{"ValueSet", "url=http://acme.org/fhir/ValueSet/x", "", []search.Value{{Raw: "http://acme.org/fhir/ValueSet/x"}}},
		{"ValueSet", "url:below=http://acme.org/fhir", "below", []search.Value{{Raw: "http://acme.org/fhir"}}},
		{"Observation", "code-value-quantity=http://loinc.org|8480-6$lt60", "", []search.Value{{Components: []search.Value{
			{System: "http://loinc.org", Code: "8480-6", HasSystem: true}, {Prefix: "lt", Number: 60}}}}},
		{"Observation", `code-value-string=a\$b$x`, "", []search.Value{{Components: []search.Value{{Code: "a$b"}, {Text: "x"}}}}},
		{"Observation", "_id=a,b", "", []search.Value{{Code: "a"}, {Code: "b"}}},
		{"Observation", "_lastUpdated=gt2020-01-01", "", []search.Value{{Prefix: "gt", Low: micros("2020-01-01T00:00:00Z")}}},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"?"+tt.query, func(t *testing.T) {
			q, warn, err := parseOne(t, tt.typ, tt.query)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(warn) != 0 {
				t.Errorf("warnings: %v", warn)
			}
			if len(q.Clauses) != 1 {
				t.Fatalf("Parse(%q) = %d clauses, want 1", tt.query, len(q.Clauses))
			}
			c := q.Clauses[0]
			if c.Modifier != tt.mod {
				t.Errorf("modifier = %q, want %q", c.Modifier, tt.mod)
			}
			if len(c.Values) != len(tt.want) {
				t.Fatalf("values = %+v, want %d", c.Values, len(tt.want))
			}
			for i, w := range tt.want {
				checkValue(t, c.Values[i], w)
			}
		})
	}
}

// checkValue compares the non-zero fields of want.
func checkValue(t *testing.T, got, want search.Value) {
	t.Helper()
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range wv.NumField() {
		name := wv.Type().Field(i).Name
		w := wv.Field(i)
		if w.IsZero() {
			continue
		}
		if name == "Components" {
			if len(got.Components) != len(want.Components) {
				t.Errorf("Components = %+v, want %+v", got.Components, want.Components)
				continue
			}
			for j := range want.Components {
				checkValue(t, got.Components[j], want.Components[j])
			}
			continue
		}
		if name == "Low" && want.Prefix == "ap" {
			// ap ranges depend on arithmetic on now; check that they widen the value.
			if got.Low >= micros("2016-01-01T00:00:00Z") || got.High <= micros("2016-01-01T23:59:59Z") {
				t.Errorf("ap range [%d, %d] does not widen the value", got.Low, got.High)
			}
			continue
		}
		if !reflect.DeepEqual(gv.Field(i).Interface(), w.Interface()) {
			t.Errorf("%s = %v, want %v", name, gv.Field(i).Interface(), w.Interface())
		}
	}
}

// TestParseErrors checks that invalid requests are 400s that name the parameter.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		typ, query string
		expr       string // expected issue expression ("" to skip)
	}{
		{"Observation", "date=2013-13", "date"},
		{"Observation", "date=2013-02-30", "date"},
		{"Observation", "date=xx2013", "date"},
		{"Observation", "date=2013-01-01T25:00", "date"},
		{"Observation", "date=yesterday", "date"},
		{"RiskAssessment", "probability=abc", "probability"},
		{"RiskAssessment", "probability=zz5", "probability"},
		{"RiskAssessment", "probability=NaN", "probability"},
		{"RiskAssessment", "probability=Inf", "probability"},
		{"RiskAssessment", "probability=1e999", "probability"},
		{"Observation", "value-quantity=5|a", "value-quantity"},
		{"Observation", "value-quantity=x||mg", "value-quantity"},
		{"Observation", "code=a|b|c", "code"},
		{"Observation", "code=|", "code"},
		{"Observation", "code:in=http://vs", "code:in"},
		{"Observation", "code:below=x", "code:below"},
		{"Observation", "code:bogus=x", "code:bogus"},
		{"Observation", "code:of-type=a|b|c", "code:of-type"},
		{"Patient", "identifier:of-type=a|b", "identifier:of-type"},
		{"Patient", "name:text=x", "name:text"},
		{"Observation", "code:missing=maybe", "code:missing"},
		{"Observation", "patient=Patient/has space", "patient"},
		{"Observation", "patient=Nonsense/1", "patient"},
		{"Observation", "patient=Practitioner/1", "patient"},
		{"Observation", "subject:Practitioner=1", "subject:Practitioner"},
		{"Observation", "subject:Patient=Group/1", "subject:Patient"},
		{"Observation", "subject.name=peter", "subject.name"},
		{"Observation", "subject:Practitioner.name=peter", "subject:Practitioner.name"},
		{"Observation", "code.name=x", "code.name"},
		{"Observation", "patient.=x", "patient."},
		{"Observation", "code-value-quantity=http://loinc.org|8480-6", "code-value-quantity"},
		{"Observation", "_id:missing=true", "_id"},
		{"Observation", "_id=a|b", "_id"},
		{"Observation", "_lastUpdated=2020-99", "_lastUpdated"},
		{"Patient", "_has:Observation:patient=x", "_has:Observation:patient"},
		{"Patient", "_has:Nonsense:patient:code=x", "_has:Nonsense:patient:code"},
		{"Patient", "_has:Observation:code:code=x", "_has:Observation:code:code"},
		{"Patient", "_has:Encounter:practitioner:status=x", "_has:Encounter:practitioner:status"},
		{"Observation", "_count=-1", "_count"},
		{"Observation", "_count=ten", "_count"},
		{"Observation", "_count=1&_count=2", "_count"},
		{"Observation", "_summary=maybe", "_summary"},
		{"Observation", "_total=all", "_total"},
		{"Observation", "_sort=code-value-quantity", "_sort"},
		{"Observation", "_sort=date,-date", "_sort"},
		{"Observation", "_elements=a+b", "_elements"},
		{"Observation", "_include=Observation", "_include"},
		{"Observation", "_include=Nonsense:subject", "_include"},
		{"Observation", "_include=Observation:code", "_include"},
		{"Observation", "_include=Observation:patient:Group", "_include"},
		{"Observation", "_include:bogus=Observation:patient", "_include:bogus"},
		{"Observation", "patient.organization.partof.partof.partof.name=x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"?"+tt.query, func(t *testing.T) {
			_, _, err := parseOne(t, tt.typ, tt.query)
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Parse(%q) error = %v, want *fhir.Error", tt.query, err)
			}
			if fe.Status != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", fe.Status)
			}
			if tt.expr != "" && (len(fe.Expression) != 1 || fe.Expression[0] != tt.expr) {
				t.Errorf("expression = %v, want [%s] (%s)", fe.Expression, tt.expr, fe.Diagnostics)
			}
		})
	}
}

// TestParseUnknown checks lenient and strict handling of what the server does not know.
func TestParseUnknown(t *testing.T) {
	for _, query := range []string{
		"nonsense=1",
		"nonsense:exact=1",
		"_text=cancer",
		"_filter=name eq x",
		"_contained=true",
		"near=1|2|3|km",
		"_sort=nonsense",
		"_include=Observation:nonsense",
		"_has:Observation:patient:nonsense=1",
		"patient.nonsense=1",
		"_type=Patient", // handled by the caller: never a warning
	} {
		t.Run(query, func(t *testing.T) {
			typ := "Observation"
			if strings.HasPrefix(query, "_has") {
				typ = "Patient"
			}
			if strings.HasPrefix(query, "near") {
				typ = "Location"
			}
			vals, _ := url.ParseQuery(query)
			o := opts()
			q, warn, err := search.Parse(registry(t), []string{typ}, vals, o)
			if err != nil {
				t.Fatalf("lenient Parse(%q): %v", query, err)
			}
			if len(q.Clauses) != 0 || len(q.Sort) != 0 || len(q.Includes) != 0 {
				t.Errorf("lenient Parse(%q) kept %+v", query, q)
			}
			if query == "_type=Patient" {
				if len(warn) != 0 {
					t.Errorf("warnings for _type: %v", warn)
				}
				return
			}
			if len(warn) != 1 {
				t.Errorf("lenient Parse(%q) warnings = %v, want 1", query, warn)
			}
			o.Strict = true
			_, _, err = search.Parse(registry(t), []string{typ}, vals, o)
			var fe *fhir.Error
			if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || len(fe.Expression) != 1 {
				t.Errorf("strict Parse(%q) error = %v, want a 400 naming the parameter", query, err)
			}
		})
	}
}

func TestParseStructure(t *testing.T) {
	t.Run("AND by repetition, OR by comma", func(t *testing.T) {
		q, _, err := parseOne(t, "Observation", "code=a,b&code=c&status=final")
		if err != nil {
			t.Fatal(err)
		}
		if len(q.Clauses) != 3 {
			t.Fatalf("clauses = %d, want 3", len(q.Clauses))
		}
		if n := len(q.Clauses[0].Values) + len(q.Clauses[1].Values); n != 3 {
			t.Errorf("code values = %d, want 3", n)
		}
	})
	t.Run("empty values are ignored", func(t *testing.T) {
		q, _, err := parseOne(t, "Observation", "code=&status=,final,")
		if err != nil {
			t.Fatal(err)
		}
		if len(q.Clauses) != 1 || len(q.Clauses[0].Values) != 1 {
			t.Fatalf("clauses = %+v", q.Clauses)
		}
	})
	t.Run("chain with type", func(t *testing.T) {
		q, _, err := parseOne(t, "Observation", "subject:Patient.name=peter")
		if err != nil {
			t.Fatal(err)
		}
		c := q.Clauses[0]
		if c.Param.Code != "subject" || c.Chain == nil || c.Chain.Type != "Patient" || c.Chain.Clause.Param.Code != "name" || c.Chain.Clause.Values[0].Text != "peter" {
			t.Fatalf("chain = %+v", c)
		}
	})
	t.Run("chain inferred and two levels", func(t *testing.T) {
		q, _, err := parseOne(t, "Observation", "patient.organization.name:exact=Acme")
		if err != nil {
			t.Fatal(err)
		}
		c := q.Clauses[0]
		if c.Chain == nil || c.Chain.Type != "Patient" || c.Chain.Clause.Chain == nil || c.Chain.Clause.Chain.Type != "Organization" {
			t.Fatalf("chain = %+v", c)
		}
		leaf := c.Chain.Clause.Chain.Clause
		if leaf.Param.Code != "name" || leaf.Modifier != "exact" || leaf.Values[0].Raw != "Acme" {
			t.Fatalf("leaf = %+v", leaf)
		}
	})
	t.Run("subject.birthdate resolves to Patient", func(t *testing.T) {
		q, _, err := parseOne(t, "Observation", "subject.birthdate=1970")
		if err != nil {
			t.Fatal(err)
		}
		if q.Clauses[0].Chain.Type != "Patient" {
			t.Fatalf("chain type = %s", q.Clauses[0].Chain.Type)
		}
	})
	t.Run("reverse chain, nested", func(t *testing.T) {
		q, _, err := parseOne(t, "Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/1")
		if err != nil {
			t.Fatal(err)
		}
		r := q.Clauses[0].Reverse
		if r == nil || r.Type != "Observation" || r.Param.Code != "patient" || r.Clause.Reverse == nil || r.Clause.Reverse.Type != "Provenance" {
			t.Fatalf("reverse = %+v", q.Clauses[0])
		}
	})
	t.Run("result parameters", func(t *testing.T) {
		q, warn, err := parseOne(t, "Observation", "_sort=-date,code,_lastUpdated&_count=500&_summary=true&_total=accurate&_elements=code,subject&_include=Observation:patient&_include:iterate=Patient:general-practitioner:Practitioner&_revinclude=Provenance:target&_include=*&_format=json&_page=abc")
		if err != nil {
			t.Fatal(err)
		}
		if len(warn) != 1 || !strings.Contains(warn[0], "_count") {
			t.Errorf("warnings = %v, want the _count cap", warn)
		}
		if q.Count != 100 || q.Summary != "true" || q.Total != search.TotalAccurate || !reflect.DeepEqual(q.Elements, []string{"code", "subject"}) {
			t.Errorf("query = %+v", q)
		}
		if len(q.Sort) != 3 || !q.Sort[0].Desc || q.Sort[0].Param.Code != "date" || q.Sort[1].Desc || q.Sort[2].Param.Code != "_lastUpdated" {
			t.Errorf("sort = %+v", q.Sort)
		}
		if len(q.Includes) != 3 || q.Includes[0].Param.Code != "patient" || q.Includes[0].Iterate ||
			q.Includes[1].Type != "" || q.Includes[1].Param != nil ||
			!q.Includes[2].Iterate || q.Includes[2].Target != "Practitioner" {
			t.Errorf("includes = %+v", q.Includes)
		}
		if len(q.RevIncludes) != 1 || q.RevIncludes[0].Type != "Provenance" {
			t.Errorf("revincludes = %+v", q.RevIncludes)
		}
	})
	t.Run("_count default and zero", func(t *testing.T) {
		q, _, _ := parseOne(t, "Observation", "")
		if q.Count != 20 {
			t.Errorf("default Count = %d, want 20", q.Count)
		}
		q, _, _ = parseOne(t, "Observation", "_count=0")
		if q.Summary != search.SummaryCount {
			t.Errorf("_count=0 Summary = %q, want count", q.Summary)
		}
	})
	t.Run("system search needs common parameters", func(t *testing.T) {
		vals := url.Values{"_lastUpdated": {"gt2020"}, "patient": {"1"}}
		q, warn, err := search.Parse(registry(t), []string{"Observation", "Patient"}, vals, opts())
		if err != nil {
			t.Fatal(err)
		}
		if len(q.Clauses) != 1 || len(warn) != 1 {
			t.Errorf("clauses = %d, warnings = %v", len(q.Clauses), warn)
		}
	})
	t.Run("too many values", func(t *testing.T) {
		_, _, err := parseOne(t, "Observation", "code="+strings.Repeat("a,", search.MaxValues+1))
		if err == nil {
			t.Fatal("no error")
		}
	})
}

func TestParseClause(t *testing.T) {
	c, err := search.ParseClause(registry(t), []string{"Observation"}, "category", "laboratory", opts())
	if err != nil || c.Param.Code != "category" || c.Values[0].Code != "laboratory" {
		t.Fatalf("ParseClause = %+v, %v", c, err)
	}
	if _, err := search.ParseClause(registry(t), []string{"Observation"}, "nonsense", "x", opts()); err == nil {
		t.Error("ParseClause of an unknown parameter succeeded")
	}
	if _, err := search.ParseClause(registry(t), []string{"Observation"}, "category", "", opts()); err == nil {
		t.Error("ParseClause of an empty value succeeded")
	}
}

func TestDateRange(t *testing.T) {
	tests := []struct {
		in        string
		low, high string
	}{
		{"2024", "2024-01-01T00:00:00Z", "2024-12-31T23:59:59.999999Z"},
		{"2024-02", "2024-02-01T00:00:00Z", "2024-02-29T23:59:59.999999Z"},
		{"2024-02-29", "2024-02-29T00:00:00Z", "2024-02-29T23:59:59.999999Z"},
		{"2024-02-29T23:59", "2024-02-29T23:59:00Z", "2024-02-29T23:59:59.999999Z"},
		{"2024-02-29T23:59:59Z", "2024-02-29T23:59:59Z", "2024-02-29T23:59:59.999999Z"},
		{"2024-02-29T23:59:59.123456789Z", "2024-02-29T23:59:59.123456Z", "2024-02-29T23:59:59.123456Z"},
		{"2024-01-01T00:00:00-05:00", "2024-01-01T05:00:00Z", "2024-01-01T05:00:00.999999Z"},
	}
	for _, tt := range tests {
		low, high, ok := search.DateRange(tt.in)
		if !ok || low != micros(tt.low) || high != micros(tt.high) {
			t.Errorf("DateRange(%q) = %d, %d, %v, want %s, %s", tt.in, low, high, ok, tt.low, tt.high)
		}
	}
	for _, bad := range []string{"", "24", "2024-2", "2024-02-30", "2024-01-01T", "2024-01-01T10", "2024-01-01T10:00:00+15:00", "2024-01-01 10:00"} {
		if _, _, ok := search.DateRange(bad); ok {
			t.Errorf("DateRange(%q) ok, want invalid", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name=Jos%C3%A9&name:exact=x", `code=a\,b,http://loinc.org|1234-5&code:not=x`, "date=ge2013-01-01T10:00:00%2B02:00,sa2013",
		"probability=ap1e2", "value-quantity=5.4||mg", "subject:Patient.name=peter", "patient.organization.name=x",
		"_has:Observation:patient:code=1234", "code-value-quantity=http://loinc.org|8480-6$lt60", "_sort=-date,code&_count=5",
		"_include:iterate=*&_revinclude=Provenance:target", "identifier:of-type=a|b|c", "url:above=http://a/b/c", "_id=1&_lastUpdated=lt2020",
	} {
		f.Add("Observation", s)
	}
	reg := registry(f)
	f.Fuzz(func(t *testing.T, typ, query string) {
		if !fhir.IsResourceType(typ) {
			typ = "Observation"
		}
		vals, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		for _, strict := range []bool{false, true} {
			o := opts()
			o.Strict = strict
			q, _, err := search.Parse(reg, []string{typ}, vals, o)
			if err != nil {
				var fe *fhir.Error
				if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest {
					t.Fatalf("Parse(%q) error %v is not a 400 *fhir.Error", query, err)
				}
				continue
			}
			if q.Count < 0 || q.Count > 100 {
				t.Fatalf("Parse(%q) Count = %d", query, q.Count)
			}
			checkClauses(t, query, q.Clauses)
		}
	})
}

// checkClauses asserts the invariants a backend relies on.
func checkClauses(t *testing.T, query string, cs []search.Clause) {
	for _, c := range cs {
		switch {
		case c.Reverse != nil:
			if c.Reverse.Param == nil || c.Reverse.Param.Type != search.TypeReference {
				t.Fatalf("Parse(%q): bad reverse chain %+v", query, c)
			}
			checkClauses(t, query, []search.Clause{c.Reverse.Clause})
		case c.Param == nil:
			t.Fatalf("Parse(%q): clause without parameter", query)
		case c.Chain != nil:
			if c.Param.Type != search.TypeReference || !fhir.IsResourceType(c.Chain.Type) {
				t.Fatalf("Parse(%q): bad chain %+v", query, c)
			}
			checkClauses(t, query, []search.Clause{c.Chain.Clause})
		case len(c.Values) == 0:
			t.Fatalf("Parse(%q): clause %s without values", query, c.Param.Code)
		}
		for _, v := range c.Values {
			if v.Low > v.High || v.NumLow > v.NumHigh {
				t.Fatalf("Parse(%q): empty range in %+v", query, v)
			}
		}
	}
}

func BenchmarkParse(b *testing.B) {
	reg := registry(b)
	vals, _ := url.ParseQuery("patient=Patient/123&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&date=ge2020-01-01&_sort=-date&_count=50&_include=Observation:patient")
	o := opts()
	for b.Loop() {
		if _, _, err := search.Parse(reg, []string{"Observation"}, vals, o); err != nil {
			b.Fatal(err)
		}
	}
}
