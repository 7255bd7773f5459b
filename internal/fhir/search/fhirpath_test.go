package search

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParsePathErrors(t *testing.T) {
	tests := []string{
		"",
		"Patient.",
		"Patient.name(",
		"Patient.name.where(",
		"(Patient.name",
		"Patient.name[x]",
		"Patient.name + 1",
		"'unterminated",
		"Patient.name as",
		"%context",
		"Patient.name)",
		"`open",
		"``",
	}
	for _, s := range tests {
		if _, err := parsePath(s); !errors.Is(err, ErrFHIRPath) {
			t.Errorf("parsePath(%q) error = %v, want ErrFHIRPath", s, err)
		}
	}
}

func TestCheckRejects(t *testing.T) {
	m, err := elementModel()
	if err != nil {
		t.Fatal(err)
	}
	tests := []string{
		"Patient.nonsense",              // unknown element
		"Patient.name.foo()",            // unknown function
		"Patient.name as Nonsense",      // unknown type
		"Patient.deceased.as(Quantity)", // never that type
		"Patient.name.resolve()",        // resolve on a non-reference
		"Observation.code",              // another resource type
		"Patient.name.where()",          // arity
		"Patient.name.first(1)",         // arity
	}
	focus := typeSet{"Patient": true}
	for _, s := range tests {
		e, err := parsePath(s)
		if err != nil {
			t.Errorf("parsePath(%q): %v", s, err)
			continue
		}
		if _, err := m.check(e, focus, focus); !errors.Is(err, ErrFHIRPath) {
			t.Errorf("check(%q) error = %v, want ErrFHIRPath", s, err)
		}
	}
}

func TestEval(t *testing.T) {
	m, err := elementModel()
	if err != nil {
		t.Fatal(err)
	}
	const obs = `{"resourceType":"Observation","id":"o1",
	  "code":{"coding":[{"system":"a","code":"1"},{"system":"b","code":"2"}]},
	  "subject":{"reference":"Patient/p1"},
	  "performer":[{"reference":"Practitioner/x"},{"reference":"Patient/p2"},{"display":"nobody"}],
	  "valueQuantity":{"value":5},
	  "effectiveDateTime":"2020",
	  "extension":[{"url":"u1","valueString":"one"},{"url":"u2","valueString":"two"}],
	  "component":[{"code":{"text":"c1"}},{"code":{"text":"c2"}}]}`
	var res map[string]any
	if err := json.Unmarshal([]byte(obs), &res); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		expr string
		want int
		typ  string // type of the first pathItem, if any
	}{
		{"Observation.code.coding.code", 2, "code"},
		{"Resource.id", 1, "id"},
		{"DomainResource.id", 1, "id"},
		{"Patient.id", 0, ""},
		{"Observation.code.coding.first().system", 1, "uri"},
		{"Observation.code.coding.last().code", 1, "code"},
		{"Observation.code.coding[1].code", 1, "code"},
		{"Observation.code.coding[5].code", 0, ""},
		{"Observation.performer.where(resolve() is Patient)", 1, "Reference"},
		{"Observation.performer.where(resolve() is Practitioner)", 1, "Reference"},
		{"Observation.performer.where(resolve() is Organization)", 0, ""},
		{"Observation.value.as(Quantity)", 1, "Quantity"},
		{"Observation.value.ofType(Quantity).value", 1, "decimal"},
		{"(Observation.value as Quantity)", 1, "Quantity"},
		{"(Observation.value as CodeableConcept)", 0, ""},
		{"Observation.effective", 1, "dateTime"},
		{"Observation.value.as(Quantity) | Observation.effective", 2, "Quantity"},
		{"Observation.extension.where(url = 'u2').value", 1, "string"},
		{"Observation.extension.where(url='u3')", 0, ""},
		{"Observation.code.coding.where(system = 'b' and code = '2')", 1, "Coding"},
		{"Observation.code.coding.where(system = 'b' or code = '1')", 2, "Coding"},
		{"Observation.code.coding.where(system != 'b')", 1, "Coding"},
		{"Observation.code.exists()", 1, "boolean"},
		{"Observation.code.coding.exists(code = '2')", 1, "boolean"},
		{"Observation.note.empty()", 1, "boolean"},
		{"Observation.component.code.text", 2, "string"},
		{"Observation.component.where($this.code.text = 'c2')", 1, "Observation_Component"},
		{"Observation.component.where(%resource.id = 'o1')", 2, "Observation_Component"},
		{"Observation.code.coding.code.where($this = '1').not()", 0, ""},
		{"Observation.subject is Reference", 1, "boolean"},
		{"Observation.status.exists().not()", 1, "boolean"},
	}
	for _, tt := range tests {
		e, err := parsePath(tt.expr)
		if err != nil {
			t.Errorf("parsePath(%q): %v", tt.expr, err)
			continue
		}
		focus := typeSet{"Observation": true}
		if _, err := m.check(e, focus, focus); err != nil && tt.expr != "Patient.id" {
			t.Errorf("check(%q): %v", tt.expr, err)
			continue
		}
		root := pathItem{v: res, t: "Observation"}
		ev := newEvaluator(m, root)
		got := ev.eval(e, ev.one(root))
		if len(got) != tt.want {
			t.Errorf("eval(%q) = %d items %v, want %d", tt.expr, len(got), got, tt.want)
			continue
		}
		if tt.want > 0 && got[0].t != tt.typ {
			t.Errorf("eval(%q)[0] type = %s, want %s", tt.expr, got[0].t, tt.typ)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"Observation.code", "(MedicationRequest.medication as CodeableConcept)", "Patient.deceased.exists() and Patient.deceased != false",
		"Observation.subject.where(resolve() is Patient)", "Bundle.entry[0].resource", "Patient.extension.where(url = 'x\\'y').value.code",
		"name | alias", "%resource.a.b", "$this", "a.`div`", "1.5", "true or false",
	} {
		f.Add(s)
	}
	m, err := elementModel()
	if err != nil {
		f.Fatal(err)
	}
	var res map[string]any
	_ = json.Unmarshal([]byte(observationJSON), &res)
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parsePath(s)
		if err != nil {
			return
		}
		focus := typeSet{"Observation": true}
		_, _ = m.check(e, focus, focus)
		root := pathItem{v: res, t: "Observation"}
		ev := newEvaluator(m, root)
		ev.eval(e, ev.one(root))
		ev.done()
	})
}
