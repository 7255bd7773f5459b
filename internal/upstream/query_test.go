package upstream

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

func mustRegistry(t testing.TB) *search.Registry {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// roundTrip parses raw as a search of typ, encodes it for the upstream, and parses that again:
// the second encoding must equal the first (the upstream is asked exactly what was parsed).
func roundTrip(t testing.TB, reg *search.Registry, typ, raw string) (url.Values, bool) {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, false
	}
	opts := search.ParseOptions{DefaultCount: 20, MaxCount: 1000, Strict: true, BaseURL: "http://proxy.example/fhir"}
	q, _, err := search.Parse(reg, []string{typ}, v, opts)
	if err != nil {
		return nil, false
	}
	enc, err := encodeParams(q)
	if err != nil {
		t.Fatalf("encode %q: %v", raw, err)
	}
	q2, _, err := search.Parse(reg, []string{typ}, enc, opts)
	if err != nil {
		t.Fatalf("%q encoded as %q does not parse: %v", raw, enc.Encode(), err)
	}
	enc2, err := encodeParams(q2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(enc, enc2) {
		t.Fatalf("%q: encoding is not stable: %q then %q", raw, enc.Encode(), enc2.Encode())
	}
	if !reflect.DeepEqual(q.Clauses, q2.Clauses) || !reflect.DeepEqual(q.Includes, q2.Includes) || !reflect.DeepEqual(q.RevIncludes, q2.RevIncludes) || !reflect.DeepEqual(q.Sort, q2.Sort) {
		t.Fatalf("%q: the upstream would run another query than the one parsed (%q)", raw, enc.Encode())
	}
	return enc, true
}

func TestEncodeParams(t *testing.T) {
	reg := mustRegistry(t)
	for _, tc := range []struct {
		typ, raw, want string
	}{
		{"Observation", "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&_count=7", "_count=7&category=http%3A%2F%2Fterminology.hl7.org%2FCodeSystem%2Fobservation-category%7Claboratory"},
		{"Observation", "subject:Patient.name=Okafor", "_count=20&subject%3APatient.name=Okafor"},
		{"Patient", "_has:Observation:patient:code=4548-4", "_count=20&_has%3AObservation%3Apatient%3Acode=4548-4"},
		{"Observation", "date=ge2020-01-01&date=lt2021", "_count=20&date=ge2020-01-01&date=lt2021"},
		{"Patient", "name:exact=a\\,b,c", "_count=20&name%3Aexact=a%5C%2Cb%2Cc"},
		{"Observation", "_include=Observation:subject:Patient&_revinclude:iterate=Provenance:target&_include=*", "_count=20&_include=Observation%3Asubject%3APatient&_include=%2A&_revinclude%3Aiterate=Provenance%3Atarget"},
		{"Observation", "_sort=-date,code&_total=accurate&_summary=count", "_count=20&_sort=-date%2Ccode&_summary=count&_total=accurate"},
		{"Observation", "_summary=true&_elements=code", "_count=20"},
		{"Observation", "value-quantity=gt5.4|http://unitsofmeasure.org|mg", "_count=20&value-quantity=gt5.4%7Chttp%3A%2F%2Funitsofmeasure.org%7Cmg"},
		{"Observation", "code:missing=true", "_count=20&code%3Amissing=true"},
	} {
		enc, ok := roundTrip(t, reg, tc.typ, tc.raw)
		if !ok {
			t.Fatalf("%q does not parse", tc.raw)
		}
		if got := enc.Encode(); got != tc.want {
			t.Errorf("%s?%s encodes as %s, want %s", tc.typ, tc.raw, got, tc.want)
		}
	}
}

// TestEncodeParamsRefusesChainFilter: a chain or _has the policy narrowed on its targets (at
// any depth) is refused with a 400 OperationOutcome, never sent without its Filter.
func TestEncodeParamsRefusesChainFilter(t *testing.T) {
	reg := mustRegistry(t)
	opts := search.ParseOptions{Strict: true, BaseURL: "http://proxy.example/fhir"}
	label, err := search.ParseClause(reg, []string{"Patient"}, "_security:not", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V", opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		typ, raw string
		set      func(q *search.Query)
	}{
		{"Observation", "subject:Patient.name=x", func(q *search.Query) { q.Clauses[0].Chain.Filter = []search.Clause{label} }},
		{"Patient", "_has:Observation:patient:code=1", func(q *search.Query) { q.Clauses[0].Reverse.Filter = []search.Clause{label} }},
		{"Observation", "subject:Patient.organization.name=x", func(q *search.Query) {
			q.Clauses[0].Chain.Clause.Chain.Filter = []search.Clause{label}
		}},
		{"Organization", "_has:Patient:organization:_has:Observation:patient:code=1", func(q *search.Query) {
			q.Clauses[0].Reverse.Clause.Reverse.Filter = []search.Clause{label}
		}},
	} {
		v, _ := url.ParseQuery(tc.raw)
		q, _, err := search.Parse(reg, []string{tc.typ}, v, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := encodeParams(q); err != nil {
			t.Fatalf("%s without a filter: %v", tc.raw, err)
		}
		tc.set(q)
		enc, err := encodeParams(q)
		var fe *fhir.Error
		if !errors.As(err, &fe) || fe.Status != http.StatusBadRequest || !strings.Contains(fe.Error(), "proxy mode") {
			t.Errorf("%s with a filter: %v, %v", tc.raw, enc, err)
		}
	}
}

func FuzzEncodeParams(f *testing.F) {
	for _, s := range []string{"name=a\\,b", "subject:Patient.name=x", "_has:Observation:patient:code=1", "date=ge2020", "code=a|b,c", "_include=*&_sort=-_id"} {
		f.Add("Observation", s)
	}
	reg := mustRegistry(f)
	f.Fuzz(func(t *testing.T, typ, raw string) {
		if typ != "Observation" && typ != "Patient" {
			typ = "Observation"
		}
		roundTrip(t, reg, typ, raw)
	})
}

func FuzzCursor(f *testing.F) {
	f.Add(cursor{Type: 2, Next: "http://u/fhir?_page=x"}.encode())
	f.Add("e30")
	f.Add("!!")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			return
		}
		if c.Type < 0 {
			t.Fatalf("negative type index from %q", s)
		}
		if c2, err := decodeCursor(c.encode()); err != nil || c2 != c {
			t.Fatalf("cursor %+v does not round-trip", c)
		}
	})
}

// FuzzDecode feeds arbitrary upstream answers to the Bundle and resource decoders: they fail
// with an error, never a panic, and never accept a resource without a valid type and id.
func FuzzDecode(f *testing.F) {
	b, err := New(Options{BaseURL: "http://up.example/fhir"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a","meta":{"versionId":"2"}}}]}`))
	f.Add([]byte(`{"resourceType":"Patient","id":"a","managingOrganization":{"reference":"http://up.example/fhir/Organization/1"}}`))
	f.Add([]byte(`{"resourceType":"Patient","id":"../x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bd, err := b.decodeBundle(data); err == nil {
			_ = bd.next()
			for _, e := range bd.Entry {
				_, _ = b.decodeResource(e.Resource)
			}
		}
		res, err := b.decodeResource(data)
		if err == nil && (res.Type == "" || res.ID == "" || res.VersionID < 0) {
			t.Fatalf("accepted %+v", res)
		}
	})
}
