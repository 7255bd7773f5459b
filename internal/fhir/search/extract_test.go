package search

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testExtractorOnce sync.Once
	testExtractor     *Extractor
	testExtractorErr  error
)

func extractor(t testing.TB) *Extractor {
	t.Helper()
	testExtractorOnce.Do(func() {
		reg, err := DefaultRegistry()
		if err != nil {
			testExtractorErr = err
			return
		}
		testExtractor, testExtractorErr = NewExtractor(reg)
	})
	if testExtractorErr != nil {
		t.Fatal(testExtractorErr)
	}
	return testExtractor
}

// notIndexed are the parameters deliberately left out (docs/search-index.md), besides _text,
// _content and _query, which have no expression.
var notIndexed = []string{
	"DocumentReference.relationship",                  // R4 swaps its components' definitions: the first is a reference
	"Location.near",                                   // special
	"MolecularSequence.chromosome-variant-coordinate", // three components
	"MolecularSequence.chromosome-window-coordinate",
	"MolecularSequence.referenceseqid-variant-coordinate",
	"MolecularSequence.referenceseqid-window-coordinate",
}

// TestCoverage compiles every parameter of every resource type of the default registry.
func TestCoverage(t *testing.T) {
	x := extractor(t)
	var got []string
	for _, u := range x.Unsupported() {
		name, reason, _ := strings.Cut(u, ": ")
		code := name[strings.IndexByte(name, '.')+1:]
		if reason == "not indexed: no expression" && (code == "_text" || code == "_content" || code == "_query") {
			continue
		}
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(got, notIndexed) {
		t.Errorf("parameters not indexed:\n%s\nwant:\n%s", strings.Join(x.Unsupported(), "\n"), strings.Join(notIndexed, "\n"))
	}
	n := 0
	for _, cs := range x.byType {
		n += len(cs)
	}
	if n < 2500 {
		t.Errorf("only %d parameters compiled", n)
	}
}

// yieldsNothing are the (parameter, element type) pairs of official expressions whose values a
// search of that type cannot use: free-text or age variants of a date choice, SampledData, an
// Attachment.
var yieldsNothing = []string{
	"CarePlan.activity-date string",
	"Consent.source-reference Attachment",
	"Group.characteristic-value Quantity", // its second component is a token
	"Group.characteristic-value Range",
	"Group.characteristic-value Reference",
	"Immunization.date string",
	"Observation.combo-value-quantity SampledData",
	"Observation.component-value-quantity SampledData",
	"Observation.value-quantity SampledData",
	"Procedure.date Age",
	"Procedure.date Range",
	"Procedure.date string",
}

// TestExtractableTypes checks that every element type an expression may select is one the
// extraction of its parameter type handles.
func TestExtractableTypes(t *testing.T) {
	x := extractor(t)
	var got []string
	for typ, cs := range x.byType {
		for _, c := range cs {
			focus := typeSet{typ: true}
			types, err := x.m.check(c.e, focus, focus)
			if err != nil {
				t.Fatalf("%s.%s: %v", typ, c.p.Code, err)
			}
			if c.p.Type == TypeComposite {
				for i, ce := range c.comps {
					ct, err := x.m.check(ce, types, focus)
					if err != nil {
						t.Fatalf("%s.%s component %d: %v", typ, c.p.Code, i, err)
					}
					for et := range ct {
						if !extractable(c.p.Components[i].Param.Type, et) {
							got = append(got, typ+"."+c.p.Code+" "+et)
						}
					}
				}
				continue
			}
			for et := range types {
				if !extractable(c.p.Type, et) {
					got = append(got, typ+"."+c.p.Code+" "+et)
				}
			}
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if !slices.Equal(got, yieldsNothing) {
		t.Errorf("non-extractable element types:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(yieldsNothing, "\n"))
	}
}

const observationJSON = `{
  "resourceType": "Observation",
  "id": "bp-1",
  "meta": {
    "versionId": "3",
    "lastUpdated": "2024-05-06T07:08:09.123Z",
    "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns|4.0.1"],
    "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R", "display": "Restricted"}],
    "tag": [{"system": "http://example.org/tags", "code": "import"}],
    "source": "http://example.org/feed#42"
  },
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}], "text": "Blood pressure"},
  "subject": {"reference": "Patient/p1", "display": "Amy"},
  "encounter": {"reference": "Encounter/e1/_history/2"},
  "performer": [{"reference": "Practitioner/dr1"}, {"reference": "https://other.example/fhir/Patient/p9"}, {"identifier": {"system": "urn:npi", "value": "123"}}],
  "effectiveDateTime": "2024-05-06",
  "issued": "2024-05-06T10:00:00+02:00",
  "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
  "identifier": [{"system": "urn:ids", "value": "A-1", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "FILL"}], "text": "Filler Number"}}],
  "component": [
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueQuantity": {"value": 80, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}
  ]
}`

const patientJSON = `{
  "resourceType": "Patient",
  "id": "p1",
  "meta": {"lastUpdated": "2024-01-02T03:04:05Z"},
  "active": true,
  "name": [{"use": "official", "family": "Núñez  García", "given": ["José", "María"], "prefix": ["Dr."]}],
  "gender": "male",
  "birthDate": "1980-03",
  "telecom": [{"system": "phone", "value": "+1 555 0100"}, {"system": "email", "value": "jose@example.org"}],
  "address": [{"line": ["1 Main St"], "city": "Zürich", "postalCode": "8001", "country": "CH"}],
  "identifier": [{"system": "urn:mrn", "value": "MRN-7"}],
  "generalPractitioner": [{"reference": "Practitioner/dr1"}],
  "managingOrganization": {"reference": "urn:uuid:3b7a4cc5-5a3e-4b9b-9a76-6b8c0fdbb5ad"},
  "link": [{"other": {"reference": "Patient/p0"}, "type": "replaces"}],
  "extension": [
    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
     "extension": [{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                   {"url": "text", "valueString": "White"}]}
  ]
}`

func micros(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMicro()
}

func find(entries []Entry, param string) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Param == param {
			out = append(out, e)
		}
	}
	return out
}

func TestExtractObservation(t *testing.T) {
	x := extractor(t)
	entries, err := x.Extract("Observation", []byte(observationJSON))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		param string
		want  []Entry
	}{
		{"_id", []Entry{{Param: "_id", Type: TypeToken, Code: "bp-1"}}},
		{"_lastUpdated", []Entry{{Param: "_lastUpdated", Type: TypeDate, Low: micros("2024-05-06T07:08:09.123Z"), High: micros("2024-05-06T07:08:09.123999Z")}}},
		{"_security", []Entry{{Param: "_security", Type: TypeToken, System: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", Code: "R", Text: "restricted"}}},
		{"_tag", []Entry{{Param: "_tag", Type: TypeToken, System: "http://example.org/tags", Code: "import"}}},
		{"_profile", []Entry{
			{Param: "_profile", Type: TypeURI, Value: "http://hl7.org/fhir/StructureDefinition/vitalsigns|4.0.1"},
			{Param: "_profile", Type: TypeURI, Value: "http://hl7.org/fhir/StructureDefinition/vitalsigns"},
		}},
		{"_source", []Entry{{Param: "_source", Type: TypeURI, Value: "http://example.org/feed#42"}}},
		{"status", []Entry{{Param: "status", Type: TypeToken, Code: "final"}}},
		{"code", []Entry{{Param: "code", Type: TypeToken, System: "http://loinc.org", Code: "85354-9", Text: "blood pressure blood pressure panel"}}},
		{"subject", []Entry{{Param: "subject", Type: TypeReference, TargetType: "Patient", TargetID: "p1"}}},
		{"patient", []Entry{{Param: "patient", Type: TypeReference, TargetType: "Patient", TargetID: "p1"}}},
		{"encounter", []Entry{{Param: "encounter", Type: TypeReference, TargetType: "Encounter", TargetID: "e1"}}},
		{"performer", []Entry{
			{Param: "performer", Type: TypeReference, TargetType: "Practitioner", TargetID: "dr1"},
			{Param: "performer", Type: TypeReference, TargetType: "Patient", TargetID: "p9", URL: "https://other.example/fhir/Patient/p9"},
			{Param: "performer", Type: TypeReference, IdentSystem: "urn:npi", IdentValue: "123"},
		}},
		{"date", []Entry{{Param: "date", Type: TypeDate, Low: micros("2024-05-06T00:00:00Z"), High: micros("2024-05-06T23:59:59.999999Z")}}},
		{"value-quantity", []Entry{{Param: "value-quantity", Type: TypeQuantity, Number: 72.5, System: "http://unitsofmeasure.org", Code: "kg", Unit: "kg"}}},
		{"identifier", []Entry{{Param: "identifier", Type: TypeToken, System: "urn:ids", Code: "A-1", Text: "filler number"}}},
		{"identifier" + OfTypeSuffix, []Entry{{Param: "identifier:of-type", Type: TypeToken, System: "http://terminology.hl7.org/CodeSystem/v2-0203", Code: "FILL", Text: "A-1"}}},
		{"component-code-value-quantity", []Entry{
			{Param: "component-code-value-quantity", Type: TypeComposite, System: "http://loinc.org", Code: "8480-6",
				Second: &Entry{Param: "component-value-quantity", Type: TypeQuantity, Number: 120, System: "http://unitsofmeasure.org", Code: "mm[Hg]", Unit: "mmHg"}},
			{Param: "component-code-value-quantity", Type: TypeComposite, System: "http://loinc.org", Code: "8462-4",
				Second: &Entry{Param: "component-value-quantity", Type: TypeQuantity, Number: 80, System: "http://unitsofmeasure.org", Code: "mm[Hg]", Unit: "mmHg"}},
		}},
		{"code-value-quantity", []Entry{
			{Param: "code-value-quantity", Type: TypeComposite, System: "http://loinc.org", Code: "85354-9", Text: "blood pressure blood pressure panel",
				Second: &Entry{Param: "value-quantity", Type: TypeQuantity, Number: 72.5, System: "http://unitsofmeasure.org", Code: "kg", Unit: "kg"}},
		}},
		{"value-concept", nil},
		{"value-date", nil},
	}
	for _, tt := range tests {
		got := find(entries, tt.param)
		if !entriesEqual(got, tt.want) {
			t.Errorf("Extract(Observation) %s =\n  %s\nwant\n  %s", tt.param, dump(got), dump(tt.want))
		}
	}
	// combo-code-value-quantity covers the Observation and each component.
	if n := len(find(entries, "combo-code-value-quantity")); n != 3 {
		t.Errorf("combo-code-value-quantity has %d rows, want 3", n)
	}
	if n := len(find(entries, "component-code")); n != 2 {
		t.Errorf("component-code has %d rows, want 2", n)
	}
}

func TestExtractPatient(t *testing.T) {
	x := extractor(t)
	entries, err := x.Extract("Patient", []byte(patientJSON))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		param string
		want  []Entry
	}{
		{"family", []Entry{{Param: "family", Type: TypeString, Value: "nunez garcia", Exact: "Núñez  García"}}},
		{"given", []Entry{
			{Param: "given", Type: TypeString, Value: "jose", Exact: "José"},
			{Param: "given", Type: TypeString, Value: "maria", Exact: "María"},
		}},
		{"name", []Entry{
			{Param: "name", Type: TypeString, Value: "nunez garcia", Exact: "Núñez  García"},
			{Param: "name", Type: TypeString, Value: "jose", Exact: "José"},
			{Param: "name", Type: TypeString, Value: "maria", Exact: "María"},
			{Param: "name", Type: TypeString, Value: "dr.", Exact: "Dr."},
		}},
		{"address-city", []Entry{{Param: "address-city", Type: TypeString, Value: "zurich", Exact: "Zürich"}}},
		{"address", []Entry{
			{Param: "address", Type: TypeString, Value: "1 main st", Exact: "1 Main St"},
			{Param: "address", Type: TypeString, Value: "zurich", Exact: "Zürich"},
			{Param: "address", Type: TypeString, Value: "8001", Exact: "8001"},
			{Param: "address", Type: TypeString, Value: "ch", Exact: "CH"},
		}},
		{"gender", []Entry{{Param: "gender", Type: TypeToken, Code: "male"}}},
		{"active", []Entry{{Param: "active", Type: TypeToken, Code: "true"}}},
		{"deceased", []Entry{{Param: "deceased", Type: TypeToken, Code: "false"}}},
		{"birthdate", []Entry{{Param: "birthdate", Type: TypeDate, Low: micros("1980-03-01T00:00:00Z"), High: micros("1980-03-31T23:59:59.999999Z")}}},
		{"phone", []Entry{{Param: "phone", Type: TypeToken, Code: "+1 555 0100"}}},
		{"email", []Entry{{Param: "email", Type: TypeToken, Code: "jose@example.org"}}},
		{"telecom", []Entry{{Param: "telecom", Type: TypeToken, Code: "+1 555 0100"}, {Param: "telecom", Type: TypeToken, Code: "jose@example.org"}}},
		{"general-practitioner", []Entry{{Param: "general-practitioner", Type: TypeReference, TargetType: "Practitioner", TargetID: "dr1"}}},
		{"organization", []Entry{{Param: "organization", Type: TypeReference, URL: "urn:uuid:3b7a4cc5-5a3e-4b9b-9a76-6b8c0fdbb5ad"}}},
		{"link", []Entry{{Param: "link", Type: TypeReference, TargetType: "Patient", TargetID: "p0"}}},
		{"race", []Entry{{Param: "race", Type: TypeToken, Code: "2106-3"}}},
		{"identifier", []Entry{{Param: "identifier", Type: TypeToken, System: "urn:mrn", Code: "MRN-7"}}},
	}
	for _, tt := range tests {
		got := find(entries, tt.param)
		if !entriesEqual(got, tt.want) {
			t.Errorf("Extract(Patient) %s =\n  %s\nwant\n  %s", tt.param, dump(got), dump(tt.want))
		}
	}
}

// TestExtractChoicesAndFilters covers casts, where() filters and the remaining datatypes.
func TestExtractChoicesAndFilters(t *testing.T) {
	x := extractor(t)
	tests := []struct {
		name, typ, body, param string
		want                   []Entry
	}{
		{"period", "Encounter", `{"resourceType":"Encounter","period":{"start":"2020-01-01T10:00:00Z"}}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: micros("2020-01-01T10:00:00Z"), High: math.MaxInt64}}},
		{"period end only", "Encounter", `{"resourceType":"Encounter","period":{"end":"2020"}}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: math.MinInt64, High: micros("2020-12-31T23:59:59.999999Z")}}},
		{"effective period", "Observation", `{"resourceType":"Observation","effectivePeriod":{"start":"2020-01-01","end":"2020-01-02"}}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: micros("2020-01-01T00:00:00Z"), High: micros("2020-01-02T23:59:59.999999Z")}}},
		{"timing events", "Observation", `{"resourceType":"Observation","effectiveTiming":{"event":["2021-02-03T04:05:06Z"]}}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: micros("2021-02-03T04:05:06Z"), High: micros("2021-02-03T04:05:06.999999Z")}}},
		{"zone offset", "Observation", `{"resourceType":"Observation","effectiveInstant":"2021-02-03T04:05:06+02:00"}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: micros("2021-02-03T02:05:06Z"), High: micros("2021-02-03T02:05:06.999999Z")}}},
		{"bad date skipped", "Observation", `{"resourceType":"Observation","effectiveDateTime":"yesterday"}`, "date", nil},
		{"value as string", "Observation", `{"resourceType":"Observation","valueString":"Positive  Result"}`, "value-string",
			[]Entry{{Param: "value-string", Type: TypeString, Value: "positive result", Exact: "Positive  Result"}}},
		{"value as CodeableConcept text", "Observation", `{"resourceType":"Observation","valueCodeableConcept":{"text":"Héllo"}}`, "value-string",
			[]Entry{{Param: "value-string", Type: TypeString, Value: "hello", Exact: "Héllo"}}},
		{"value concept", "Observation", `{"resourceType":"Observation","valueCodeableConcept":{"coding":[{"system":"s","code":"c"}]}}`, "value-concept",
			[]Entry{{Param: "value-concept", Type: TypeToken, System: "s", Code: "c"}}},
		{"quantity is not a concept", "Observation", `{"resourceType":"Observation","valueQuantity":{"value":1}}`, "value-concept", nil},
		{"resolve() is Patient keeps patients", "Observation", `{"resourceType":"Observation","subject":{"reference":"Group/g1"}}`, "patient", nil},
		{"resolve() on an absolute URL", "Observation", `{"resourceType":"Observation","subject":{"reference":"http://x.org/fhir/Patient/7/_history/1"}}`, "patient",
			[]Entry{{Param: "patient", Type: TypeReference, TargetType: "Patient", TargetID: "7", URL: "http://x.org/fhir/Patient/7/_history/1"}}},
		{"medication as CodeableConcept", "MedicationRequest", `{"resourceType":"MedicationRequest","medicationCodeableConcept":{"coding":[{"system":"rx","code":"1"}]}}`, "code",
			[]Entry{{Param: "code", Type: TypeToken, System: "rx", Code: "1"}}},
		{"medication as Reference", "MedicationRequest", `{"resourceType":"MedicationRequest","medicationReference":{"reference":"Medication/m1"}}`, "medication",
			[]Entry{{Param: "medication", Type: TypeReference, TargetType: "Medication", TargetID: "m1"}}},
		{"medication reference is not a code", "MedicationRequest", `{"resourceType":"MedicationRequest","medicationReference":{"reference":"Medication/m1"}}`, "code", nil},
		{"onset age", "Condition", `{"resourceType":"Condition","onsetAge":{"value":40,"unit":"a","system":"http://unitsofmeasure.org","code":"a"}}`, "onset-age",
			[]Entry{{Param: "onset-age", Type: TypeQuantity, Number: 40, System: "http://unitsofmeasure.org", Code: "a", Unit: "a"}}},
		{"onset range", "Condition", `{"resourceType":"Condition","onsetRange":{"low":{"value":1},"high":{"value":2}}}`, "onset-age",
			[]Entry{{Param: "onset-age", Type: TypeQuantity, Number: 1}, {Param: "onset-age", Type: TypeQuantity, Number: 2}}},
		{"asserted-date extension", "Condition", `{"resourceType":"Condition","extension":[{"url":"http://hl7.org/fhir/StructureDefinition/condition-assertedDate","valueDateTime":"2019"},{"url":"other","valueDateTime":"2018"}]}`, "asserted-date",
			[]Entry{{Param: "asserted-date", Type: TypeDate, Low: micros("2019-01-01T00:00:00Z"), High: micros("2019-12-31T23:59:59.999999Z")}}},
		{"related artifact filter", "PlanDefinition", `{"resourceType":"PlanDefinition","relatedArtifact":[{"type":"depends-on","resource":"http://x.org/Library/a|1.0"},{"type":"citation","resource":"http://x.org/Library/b"}]}`, "depends-on",
			[]Entry{{Param: "depends-on", Type: TypeReference, URL: "http://x.org/Library/a|1.0"}, {Param: "depends-on", Type: TypeReference, URL: "http://x.org/Library/a"}}},
		{"deceased dateTime", "Patient", `{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}`, "deceased",
			[]Entry{{Param: "deceased", Type: TypeToken, Code: "true"}}},
		{"deceased false", "Patient", `{"resourceType":"Patient","deceasedBoolean":false}`, "deceased",
			[]Entry{{Param: "deceased", Type: TypeToken, Code: "false"}}},
		{"death-date", "Patient", `{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}`, "death-date",
			[]Entry{{Param: "death-date", Type: TypeDate, Low: micros("2020-01-01T00:00:00Z"), High: micros("2020-01-01T23:59:59.999999Z")}}},
		{"money", "Invoice", `{"resourceType":"Invoice","totalNet":{"value":10.5,"currency":"EUR"}}`, "totalnet",
			[]Entry{{Param: "totalnet", Type: TypeQuantity, Number: 10.5, System: "urn:iso:std:iso:4217", Code: "EUR", Unit: "EUR"}}},
		{"number", "RiskAssessment", `{"resourceType":"RiskAssessment","prediction":[{"probabilityDecimal":0.25}]}`, "probability",
			[]Entry{{Param: "probability", Type: TypeNumber, Number: 0.25}}},
		{"uri", "ValueSet", `{"resourceType":"ValueSet","url":"http://x.org/ValueSet/v"}`, "url",
			[]Entry{{Param: "url", Type: TypeURI, Value: "http://x.org/ValueSet/v"}}},
		{"bundle composition", "Bundle", `{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition","id":"c1"}},{"resource":{"resourceType":"Patient","id":"p1"}}]}`, "composition",
			[]Entry{{Param: "composition", Type: TypeReference, TargetType: "Composition", TargetID: "c1"}}},
		{"coding text only", "Observation", `{"resourceType":"Observation","code":{"text":"Free text"}}`, "code",
			[]Entry{{Param: "code", Type: TypeToken, Text: "free text"}}},
		{"contained reference skipped", "Observation", `{"resourceType":"Observation","subject":{"reference":"#p"}}`, "subject", nil},
		{"reference identifier", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/1","identifier":{"system":"s","value":"v"}}}`, "subject",
			[]Entry{{Param: "subject", Type: TypeReference, TargetType: "Patient", TargetID: "1", IdentSystem: "s", IdentValue: "v"}}},
		{"group characteristic-value boolean", "Group", `{"resourceType":"Group","characteristic":[{"code":{"coding":[{"system":"s","code":"c"}]},"valueBoolean":true}]}`, "characteristic-value",
			[]Entry{{Param: "characteristic-value", Type: TypeComposite, System: "s", Code: "c", Second: &Entry{Param: "value", Type: TypeToken, Code: "true"}}}},
		{"code-value-date", "Observation", `{"resourceType":"Observation","code":{"coding":[{"code":"c"}]},"valueDateTime":"2020"}`, "code-value-date",
			[]Entry{{Param: "code-value-date", Type: TypeComposite, Code: "c", Second: &Entry{Param: "value-date", Type: TypeDate, Low: micros("2020-01-01T00:00:00Z"), High: micros("2020-12-31T23:59:59.999999Z")}}}},
		{"wrong JSON types are ignored", "Observation", `{"resourceType":"Observation","subject":"Patient/1","code":[1,2],"status":{"a":1}}`, "subject", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := x.Extract(tt.typ, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := find(entries, tt.param); !entriesEqual(got, tt.want) {
				t.Errorf("Extract(%s) %s =\n  %s\nwant\n  %s", tt.typ, tt.param, dump(got), dump(tt.want))
			}
		})
	}
}

func TestExtractErrors(t *testing.T) {
	x := extractor(t)
	tests := []struct{ typ, body string }{
		{"Patient", `not json`},
		{"Patient", `[]`},
		{"Patient", `null`},
		{"Patient", `{"resourceType":"Observation"}`},
		{"Patient", `{}`},
		{"Nonsense", `{"resourceType":"Nonsense"}`},
	}
	for _, tt := range tests {
		if _, err := x.Extract(tt.typ, []byte(tt.body)); !errors.Is(err, ErrNotIndexable) {
			t.Errorf("Extract(%s, %s) error = %v, want ErrNotIndexable", tt.typ, tt.body, err)
		}
	}
}

func TestRegistryExtract(t *testing.T) {
	reg, err := DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	a, err := reg.Extract("Patient", []byte(patientJSON))
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Extract("Patient", []byte(patientJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) == 0 || !entriesEqual(a, b) {
		t.Errorf("Registry.Extract is not stable: %d vs %d entries", len(a), len(b))
	}
	x1, _ := reg.extractor()
	x2, _ := reg.extractor()
	if x1 != x2 {
		t.Error("Registry.Extract compiles the registry more than once")
	}
}

func entriesEqual(a, b []Entry) bool {
	return slices.EqualFunc(a, b, func(x, y Entry) bool {
		if (x.Second == nil) != (y.Second == nil) {
			return false
		}
		if x.Second != nil && *x.Second != *y.Second {
			return false
		}
		x.Second, y.Second = nil, nil
		return x == y
	})
}

func dump(es []Entry) string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("\n  ")
		}
		s := e
		s.Second = nil
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(fmtEntry(s), "  ", " "), "\n", "")))
		if e.Second != nil {
			b.WriteString(" second=" + fmtEntry(*e.Second))
		}
	}
	return b.String()
}

func fmtEntry(e Entry) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("param", e.Param)
	add("type", string(e.Type))
	add("value", e.Value)
	add("exact", e.Exact)
	add("system", e.System)
	add("code", e.Code)
	add("text", e.Text)
	add("unit", e.Unit)
	add("target", e.TargetType+"/"+e.TargetID)
	add("url", e.URL)
	add("ident", e.IdentSystem+"|"+e.IdentValue)
	if e.Low != 0 || e.High != 0 {
		parts = append(parts, "low="+time.UnixMicro(e.Low).UTC().Format(time.RFC3339Nano), "high="+time.UnixMicro(e.High).UTC().Format(time.RFC3339Nano))
	}
	if e.Number != 0 {
		parts = append(parts, "number="+strconv.FormatFloat(e.Number, 'g', -1, 64))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
