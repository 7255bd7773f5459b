package search

import "testing"

func TestRegistry(t *testing.T) {
	r, err := DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		typ, code string
		want      Type
		expr      string
	}{
		{"Observation", "code", TypeToken, "Observation.code"},
		{"Observation", "patient", TypeReference, "Observation.subject.where(resolve() is Patient)"},
		{"Condition", "code", TypeToken, "Condition.code"},
		{"Patient", "name", TypeString, "Patient.name"},
		{"Patient", "_id", TypeToken, "Resource.id"},
		{"Observation", "_lastUpdated", TypeDate, "Resource.meta.lastUpdated"},
		{"Patient", "race", TypeToken, "Patient.extension.where(url = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-race').extension.value.code"},
		{"Observation", "code-value-quantity", TypeComposite, "Observation"},
	}
	for _, tt := range tests {
		p, ok := r.Lookup(tt.typ, tt.code)
		if !ok {
			t.Errorf("Lookup(%q, %q) not found", tt.typ, tt.code)
			continue
		}
		if p.Type != tt.want || p.Expression != tt.expr {
			t.Errorf("Lookup(%q, %q) = %s %q, want %s %q", tt.typ, tt.code, p.Type, p.Expression, tt.want, tt.expr)
		}
	}
	p, _ := r.Lookup("Observation", "code-value-quantity")
	if len(p.Components) != 2 || p.Components[0].Param == nil || p.Components[1].Param == nil {
		t.Fatalf("composite components not resolved: %+v", p.Components)
	}
	if _, ok := r.Lookup("Observation", "nonsense"); ok {
		t.Error("Lookup of an unknown code succeeded")
	}
}
