package validate

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

var (
	sharedOnce sync.Once
	sharedV    *Validator
	sharedErr  error
)

// validator returns one Validator for the whole test binary: compiling is the slow part.
func validator(tb testing.TB) *Validator {
	tb.Helper()
	sharedOnce.Do(func() { sharedV, sharedErr = New() })
	if sharedErr != nil {
		tb.Fatalf("New() = %v", sharedErr)
	}
	return sharedV
}

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// with returns the JSON object body with the top-level elements in set replaced (a nil value
// deletes the element).
func with(tb testing.TB, body []byte, set map[string]any) []byte {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	out, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

type wantIssue struct{ code, expr string }

func TestValidate(t *testing.T) {
	v := validator(t)
	patient := readTestdata(t, "patient.json")
	obs := readTestdata(t, "observation.json")
	raw := func(s string) []byte { return []byte(s) }
	tests := []struct {
		name   string
		typ    string
		body   []byte
		status int         // 0: valid
		want   []wantIssue // issues that must be among those reported
	}{
		{name: "valid patient", typ: "Patient", body: patient},
		{name: "valid observation", typ: "Observation", body: obs},
		{name: "minimal patient", typ: "Patient", body: raw(`{"resourceType":"Patient"}`)},
		{name: "gender blue", typ: "Patient", body: with(t, patient, map[string]any{"gender": "blue"}),
			status: 422, want: []wantIssue{{"value", "Patient.gender"}}},
		{name: "unknown element", typ: "Patient", body: with(t, patient, map[string]any{"favouriteColour": "blue"}),
			status: 422, want: []wantIssue{{"structure", "Patient.favouriteColour"}}},
		{name: "birthDate 1970-13-45", typ: "Patient", body: with(t, patient, map[string]any{"birthDate": "1970-13-45"}),
			status: 422, want: []wantIssue{{"value", "Patient.birthDate"}}},
		{name: "birthDate February 30", typ: "Patient", body: with(t, patient, map[string]any{"birthDate": "1970-02-30"}),
			status: 422, want: []wantIssue{{"value", "Patient.birthDate"}}},
		{name: "leap day of a common year", typ: "Patient", body: with(t, patient, map[string]any{"birthDate": "1900-02-29"}),
			status: 422, want: []wantIssue{{"value", "Patient.birthDate"}}},
		{name: "dateTime without zone", typ: "Observation", body: with(t, obs, map[string]any{"effectiveDateTime": "2024-03-01T10:30:00"}),
			status: 422, want: []wantIssue{{"value", "Observation.effectiveDateTime"}}},
		{name: "observation missing status and code", typ: "Observation", body: with(t, obs, map[string]any{"status": nil, "code": nil}),
			status: 422, want: []wantIssue{{"required", "Observation.status"}, {"required", "Observation.code"}}},
		{name: "status given only as an extension", typ: "Observation",
			body: with(t, obs, map[string]any{"status": nil, "_status": map[string]any{"extension": []any{map[string]any{
				"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}}}})},
		{name: "two value[x]", typ: "Observation", body: with(t, obs, map[string]any{"valueString": "high", "valueQuantity": map[string]any{"value": 1}}),
			status: 422, want: []wantIssue{{"structure", "Observation.value"}}},
		{name: "two value[x] in a component", typ: "Observation",
			body: with(t, obs, map[string]any{"component": []any{map[string]any{
				"code": map[string]any{"text": "x"}, "valueString": "a", "valueBoolean": true}}}),
			status: 422, want: []wantIssue{{"structure", "Observation.component[0].value"}}},
		{name: "value and its extension twin are one variant", typ: "Observation",
			body: with(t, obs, map[string]any{"valueString": "high", "_valueString": map[string]any{"id": "v"}})},
		{name: "two effective[x]", typ: "Observation", body: with(t, obs, map[string]any{"effectivePeriod": map[string]any{"start": "2024-01-01"}}),
			status: 422, want: []wantIssue{{"structure", "Observation.effective"}}},
		{name: "two deceased[x]", typ: "Patient", body: with(t, patient, map[string]any{"deceasedDateTime": "2020-01-01"}),
			status: 422, want: []wantIssue{{"structure", "Patient.deceased"}}},
		{name: "reference Patient/", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Patient/"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "reference foo bar", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "foo bar"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "reference to an unknown type", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Alien/1"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "reference with a bad id", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Patient/a_b"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "reference to a version", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Patient/1/_history/2"}})},
		{name: "reference with a bad history path", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Patient/1/history/2"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "absolute reference", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "https://fhir.example.org/r4/Patient/123"}})},
		{name: "absolute reference without host", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "https:///Patient/1"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "urn:uuid reference", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}})},
		{name: "bad urn:uuid reference", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "urn:uuid:not-a-uuid"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "urn:oid reference", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "urn:oid:1.2.3.4"}})},
		{name: "bad urn:oid reference", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "urn:oid:9.x"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "reference to a type the element does not allow", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Medication/m1"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "absolute reference to a type the element does not allow", typ: "Observation",
			body:   with(t, obs, map[string]any{"subject": map[string]any{"reference": "https://x.example/fhir/Medication/m1/_history/3"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "reference type disagrees with the reference", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "Patient/1", "type": "Group"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.type"}}},
		{name: "logical reference of a wrong type", typ: "Observation",
			body:   with(t, obs, map[string]any{"subject": map[string]any{"type": "Medication", "identifier": map[string]any{"value": "x"}}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.type"}}},
		{name: "reference in an extension", typ: "Patient",
			body:   with(t, patient, map[string]any{"extension": []any{map[string]any{"url": "http://example.org/x", "valueReference": map[string]any{"reference": "nope"}}}}),
			status: 422, want: []wantIssue{{"value", "Patient.extension[0].valueReference.reference"}}},
		{name: "reference in a data type checks its targets", typ: "Patient",
			body:   with(t, patient, map[string]any{"identifier": []any{map[string]any{"value": "1", "assigner": map[string]any{"reference": "Patient/1"}}}}),
			status: 422, want: []wantIssue{{"value", "Patient.identifier[0].assigner.reference"}}},
		{name: "contained resource referenced locally", typ: "Observation",
			body: with(t, obs, map[string]any{
				"contained": []any{map[string]any{"resourceType": "Patient", "id": "p1", "gender": "female"}},
				"subject":   map[string]any{"reference": "#p1"}})},
		{name: "local reference to nothing", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "#p1"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "local reference to a contained resource of a wrong type", typ: "Observation",
			body: with(t, obs, map[string]any{
				"contained": []any{map[string]any{"resourceType": "Medication", "id": "m1"}},
				"subject":   map[string]any{"reference": "#m1"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "invalid contained resource", typ: "Observation",
			body: with(t, obs, map[string]any{
				"contained": []any{map[string]any{"resourceType": "Patient", "id": "p1", "gender": "blue"}},
				"subject":   map[string]any{"reference": "#p1"}}),
			status: 422, want: []wantIssue{{"value", "Observation.contained[0].gender"}}},
		{name: "contained resource with labels, versionId, nested contained and no id", typ: "Observation",
			body: with(t, obs, map[string]any{"contained": []any{map[string]any{"resourceType": "Patient",
				"meta":      map[string]any{"versionId": "1", "security": []any{map[string]any{"code": "R"}}},
				"contained": []any{map[string]any{"resourceType": "Patient", "id": "x"}}}}}),
			status: 422, want: []wantIssue{{"invalid", "Observation.contained[0].meta.security"}, {"invalid", "Observation.contained[0].meta.versionId"},
				{"invalid", "Observation.contained[0].contained"}, {"required", "Observation.contained[0].id"}}},
		{name: "container reference outside a contained resource", typ: "Observation", body: with(t, obs, map[string]any{"subject": map[string]any{"reference": "#"}}),
			status: 422, want: []wantIssue{{"value", "Observation.subject.reference"}}},
		{name: "contained resource of an unknown type", typ: "Observation", body: with(t, obs, map[string]any{"contained": []any{map[string]any{"resourceType": "Project", "id": "x"}}}),
			status: 422, want: []wantIssue{{"invalid", "Observation.contained[0].resourceType"}}},
		{name: "invalid resource in a bundle", typ: "Bundle",
			body:   raw(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a","resource":{"resourceType":"Patient","gender":"blue"}}]}`),
			status: 422, want: []wantIssue{{"value", "Bundle.entry[0].resource.gender"}}},
		{name: "valid bundle", typ: "Bundle",
			body: raw(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","gender":"female"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}}}]}`)},
		{name: "required primitives of a bundle and its backbone elements", typ: "Bundle",
			body:   raw(`{"resourceType":"Bundle","entry":[{"request":{"url":"Patient"},"resource":{"resourceType":"Patient"}}]}`),
			status: 422, want: []wantIssue{{"required", "Bundle.type"}, {"required", "Bundle.entry[0].request.method"}}},
		{name: "medplum-only Reference.resource is unknown in R4", typ: "Observation",
			body:   with(t, obs, map[string]any{"subject": map[string]any{"reference": "Patient/1", "resource": map[string]any{"resourceType": "Patient"}}}),
			status: 422, want: []wantIssue{{"structure", "Observation.subject.resource"}}},
		{name: "extension without url", typ: "Patient", body: with(t, patient, map[string]any{"extension": []any{map[string]any{"valueString": "x"}}}),
			status: 422, want: []wantIssue{{"required", "Patient.extension[0].url"}}},
		{name: "extension with a value and extensions", typ: "Patient",
			body: with(t, patient, map[string]any{"extension": []any{map[string]any{"url": "http://example.org/x", "valueString": "x",
				"extension": []any{map[string]any{"url": "y", "valueBoolean": true}}}}}),
			status: 422, want: []wantIssue{{"invalid", "Patient.extension[0]"}}},
		{name: "empty array", typ: "Patient", body: with(t, patient, map[string]any{"name": []any{}}),
			status: 422, want: []wantIssue{{"required", "Patient.name"}}},
		{name: "empty object", typ: "Patient", body: with(t, patient, map[string]any{"maritalStatus": map[string]any{}}),
			status: 422, want: []wantIssue{{"required", "Patient.maritalStatus"}}},
		{name: "empty string", typ: "Patient", body: with(t, patient, map[string]any{"name": []any{map[string]any{"family": ""}}}),
			status: 422, want: []wantIssue{{"value", "Patient.name[0].family"}}},
		{name: "integer with a fraction", typ: "Patient", body: with(t, patient, map[string]any{"multipleBirthInteger": 1.5}),
			status: 422, want: []wantIssue{{"value", "Patient.multipleBirthInteger"}}},
		{name: "integer out of range", typ: "Patient", body: with(t, patient, map[string]any{"multipleBirthInteger": 3000000000}),
			status: 422, want: []wantIssue{{"value", "Patient.multipleBirthInteger"}}},
		{name: "positiveInt zero", typ: "Observation",
			body:   with(t, obs, map[string]any{"valueSampledData": map[string]any{"origin": map[string]any{"value": 0}, "period": 1, "dimensions": 0}}),
			status: 422, want: []wantIssue{{"value", "Observation.valueSampledData.dimensions"}}},
		{name: "wrong JSON type", typ: "Patient", body: with(t, patient, map[string]any{"active": "yes"}),
			status: 422, want: []wantIssue{{"structure", "Patient.active"}}},
		{name: "nested wrong JSON type", typ: "Patient", body: with(t, patient, map[string]any{"name": []any{map[string]any{"given": []any{"Alice", 3}}}}),
			status: 422, want: []wantIssue{{"structure", "Patient.name[0].given[1]"}}},
		{name: "huge unknown element name", typ: "Patient", body: with(t, patient, map[string]any{strings.Repeat("x", 5000): 1}),
			status: 422, want: []wantIssue{{"structure", "Patient." + strings.Repeat("x", maxExpression-len("Patient.")) + "..."}}},
		{name: "object where a code belongs", typ: "Patient", body: with(t, patient, map[string]any{"gender": map[string]any{"x": strings.Repeat("y", 5000)}}),
			status: 422, want: []wantIssue{{"value", "Patient.gender"}}},
		{name: "bad id", typ: "Patient", body: with(t, patient, map[string]any{"id": "a b"}),
			status: 422, want: []wantIssue{{"value", "Patient.id"}}},
		{name: "id too long", typ: "Patient", body: with(t, patient, map[string]any{"id": strings.Repeat("a", 65)}),
			status: 422, want: []wantIssue{{"value", "Patient.id"}}},
		{name: "unknown resourceType in the body", typ: "Patient", body: raw(`{"resourceType":"Foo"}`),
			status: 422, want: []wantIssue{{"invalid", "resourceType"}}},
		{name: "unknown resourceType requested", typ: "Foo", body: raw(`{"resourceType":"Foo"}`),
			status: 422, want: []wantIssue{{"invalid", "resourceType"}}},
		{name: "non-R4 type of the schema's distributor", typ: "Project", body: raw(`{"resourceType":"Project"}`),
			status: 422, want: []wantIssue{{"invalid", "resourceType"}}},
		{name: "resourceType of another type", typ: "Patient", body: raw(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`),
			status: 422, want: []wantIssue{{"invalid", "resourceType"}}},
		{name: "no resourceType", typ: "Patient", body: raw(`{"gender":"female"}`),
			status: 422, want: []wantIssue{{"required", "resourceType"}}},
		{name: "duplicate property", typ: "Patient", body: raw(`{"resourceType":"Patient","gender":"female","gender":"male"}`),
			status: 400, want: []wantIssue{{"structure", ""}}},
		{name: "invalid UTF-8", typ: "Patient", body: raw("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\"}]}"),
			status: 400, want: []wantIssue{{"structure", ""}}},
		{name: "not JSON", typ: "Patient", body: raw(`<Patient/>`), status: 400, want: []wantIssue{{"structure", ""}}},
		{name: "JSON array", typ: "Patient", body: raw(`[{"resourceType":"Patient"}]`), status: 400, want: []wantIssue{{"structure", ""}}},
		{name: "two JSON values", typ: "Patient", body: raw(`{"resourceType":"Patient"} {}`), status: 400, want: []wantIssue{{"structure", ""}}},
		{name: "empty body", typ: "Patient", body: nil, status: 400, want: []wantIssue{{"structure", ""}}},
		{name: "nested too deep", typ: "Patient", body: raw(`{"resourceType":"Patient","x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`),
			status: 400, want: []wantIssue{{"structure", ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.Validate(tt.typ, tt.body)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("Validate(%s) = %v, want nil; outcome %s", tt.typ, err, outcomeJSON(err))
				}
				return
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) {
				t.Fatalf("Validate(%s) = %v, want a *fhir.Error", tt.typ, err)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			if fe.Status != tt.status {
				t.Errorf("status = %d, want %d; outcome %s", fe.Status, tt.status, outcomeJSON(err))
			}
			issues := fe.Outcome().Issue
			for _, w := range tt.want {
				found := slices.ContainsFunc(issues, func(is fhir.Issue) bool {
					return is.Code == w.code && (w.expr == "" && len(is.Expression) == 0 || slices.Contains(is.Expression, w.expr))
				})
				if !found {
					t.Errorf("no issue {%s %s}; outcome %s", w.code, w.expr, outcomeJSON(err))
				}
			}
		})
	}
}

func outcomeJSON(err error) string {
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		return "<none>"
	}
	return string(fhir.MarshalOutcome(fe.Outcome()))
}

func TestValidateCapsIssues(t *testing.T) {
	v := validator(t)
	var names []any
	for range 50 {
		names = append(names, map[string]any{"family": 1})
	}
	body := with(t, readTestdata(t, "patient.json"), map[string]any{"name": names})
	err := v.Validate("Patient", body)
	var fe *fhir.Error
	if !errors.As(err, &fe) {
		t.Fatalf("Validate = %v, want a *fhir.Error", err)
	}
	issues := fe.Outcome().Issue
	if len(issues) != MaxIssues+1 {
		t.Fatalf("len(issues) = %d, want %d", len(issues), MaxIssues+1)
	}
	last := issues[len(issues)-1]
	if last.Severity != "information" || !strings.Contains(last.Diagnostics, "30 further issues") {
		t.Errorf("last issue = %+v, want the count of the 30 issues left out", last)
	}
	if fe.Status != http.StatusUnprocessableEntity {
		t.Errorf("status = %d, want 422", fe.Status)
	}
}

// The schema library reports in map order; the outcome must not depend on it.
func TestValidateIsDeterministic(t *testing.T) {
	v := validator(t)
	body := with(t, readTestdata(t, "observation.json"), map[string]any{
		"status": "nope", "code": nil, "valueString": "a", "valueBoolean": true, "foo": 1, "bar": 2,
		"subject": map[string]any{"reference": "x y"}, "issued": "2024-02-30T00:00:00Z"})
	first := outcomeJSON(v.Validate("Observation", body))
	for range 30 {
		if got := outcomeJSON(v.Validate("Observation", body)); got != first {
			t.Fatalf("outcome changed between runs:\n%s\n%s", first, got)
		}
	}
}

func TestChoiceModel(t *testing.T) {
	v := validator(t)
	tests := []struct {
		def, variant, base string
	}{
		{"Observation", "valueQuantity", "value"},
		{"Observation", "valueCodeableConcept", "value"},
		{"Observation", "effectiveDateTime", "effective"},
		{"Observation_Component", "valueString", "value"},
		{"Patient", "deceasedBoolean", "deceased"},
		{"Patient", "multipleBirthInteger", "multipleBirth"},
		{"Extension", "valueReference", "value"},
		{"Extension", "_valueString", "value"},
		{"Condition", "onsetAge", "onset"},
		{"MedicationRequest", "medicationCodeableConcept", "medication"},
		{"MedicationRequest", "reportedBoolean", "reported"},
	}
	for _, tt := range tests {
		if got := v.model.defs[tt.def].choice[tt.variant]; got != tt.base {
			t.Errorf("choice[%s.%s] = %q, want %q", tt.def, tt.variant, got, tt.base)
		}
	}
	// Separate elements that look like variants must not be taken for a choice.
	for _, tt := range []struct{ def, prop string }{
		{"MedicationRequest", "reasonCode"}, {"MedicationRequest", "reasonReference"},
		{"MedicationRequest", "instantiatesCanonical"}, {"Patient", "birthDate"},
	} {
		if got, ok := v.model.defs[tt.def].choice[tt.prop]; ok {
			t.Errorf("choice[%s.%s] = %q, want none", tt.def, tt.prop, got)
		}
	}
}

func TestCompileAll(t *testing.T) {
	v := validator(t)
	if err := v.CompileAll(); err != nil {
		t.Fatalf("CompileAll() = %v", err)
	}
}

func TestValidateConcurrently(t *testing.T) {
	v, err := New() // a fresh one, so that the lazy compilation races too
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{
		"Patient":     readTestdata(t, "patient.json"),
		"Observation": readTestdata(t, "observation.json"),
		"Condition":   []byte(`{"resourceType":"Condition","subject":{"reference":"Patient/1"}}`),
	}
	var wg sync.WaitGroup
	for i := range 12 {
		for typ, body := range bodies {
			wg.Go(func() {
				if err := v.Validate(typ, body); err != nil {
					t.Errorf("goroutine %d: Validate(%s) = %v", i, typ, err)
				}
			})
		}
	}
	wg.Wait()
}

func TestExpression(t *testing.T) {
	root := map[string]any{"name": []any{map[string]any{"given": []any{"a", "b"}}}, "10": map[string]any{}}
	tests := []struct {
		loc  []string
		want string
	}{
		{nil, "Patient"},
		{[]string{"name"}, "Patient.name"},
		{[]string{"name", "0", "given", "1"}, "Patient.name[0].given[1]"},
		{[]string{"10"}, "Patient.10"},
		{[]string{"missing", "x"}, "Patient.missing.x"},
	}
	for _, tt := range tests {
		if got := expression("Patient", root, tt.loc); got != tt.want {
			t.Errorf("expression(%q) = %q, want %q", tt.loc, got, tt.want)
		}
	}
}

func TestValidCalendarDate(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"2024-02-29", true}, {"2023-02-29", false}, {"2000-02-29", true}, {"1900-02-29", false},
		{"2024-04-31", false}, {"2024-12-31T23:59:59Z", true}, {"2024", true}, {"2024-02", true},
		{"1970-13-45", true}, // the pattern's to report
	}
	for _, tt := range tests {
		if got := validCalendarDate(tt.in); got != tt.want {
			t.Errorf("validCalendarDate(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func FuzzValidate(f *testing.F) {
	v := validator(f)
	for _, name := range []string{"patient.json", "observation.json"} {
		f.Add("Patient", readTestdata(f, name))
		f.Add("Observation", readTestdata(f, name))
	}
	f.Add("Bundle", []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","contained":[{"resourceType":"Patient"}]}}]}`))
	f.Add("Observation", []byte(`{"resourceType":"Observation","subject":{"reference":"#"},"contained":[{"resourceType":"Patient","id":"a"}]}`))
	f.Add("Patient", []byte(`{"resourceType":"Patient","name":[{"given":["\ud800"]}]}`))
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		err := v.Validate(typ, body)
		if err == nil {
			return
		}
		var fe *fhir.Error
		if !errors.As(err, &fe) {
			t.Fatalf("Validate = %v, want a *fhir.Error", err)
		}
		if n := len(fe.Outcome().Issue); n == 0 || n > MaxIssues+1 {
			t.Fatalf("%d issues", n)
		}
	})
}

func BenchmarkValidate(b *testing.B) {
	v := validator(b)
	for _, tt := range []struct{ typ, file string }{{"Patient", "patient.json"}, {"Observation", "observation.json"}} {
		body := readTestdata(b, tt.file)
		if err := v.Validate(tt.typ, body); err != nil {
			b.Fatal(err)
		}
		b.Run(tt.typ, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := v.Validate(tt.typ, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidateParts splits Validate into its three stages on the Observation.
func BenchmarkValidateParts(b *testing.B) {
	v := validator(b)
	body := readTestdata(b, "observation.json")
	tree, err := decodeStrict(body)
	if err != nil {
		b.Fatal(err)
	}
	sch, err := v.schema("Observation")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeStrict(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("schema", func(b *testing.B) {
		for b.Loop() {
			if err := sch.Validate(tree); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checks", func(b *testing.B) {
		obj := tree.(map[string]any)
		for b.Loop() {
			c := checker{v: v}
			c.object("Observation", obj, &loc{root: "Observation"}, &scope{})
			if len(c.issues) > 0 {
				b.Fatal(c.issues)
			}
		}
	})
}
