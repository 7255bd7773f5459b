package policy

import (
	"context"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// FuzzPatientIsolation: whatever patient/ or user/ scopes a token of patient p1 (patient claim
// and fhirUser Patient/p1) carries and whatever it asks,
// another patient's resource never passes a decision (SECURITY-LESSONS #1, #2, #7).
func FuzzPatientIsolation(f *testing.F) {
	seeds := []string{
		"patient/*.rs", "patient/*.cruds user/*.cruds", "patient/Observation.rs user/Observation.rs",
		"patient/Observation.rs?category=laboratory", "user/*.rs", "patient/*.* user/Practitioner.read",
		"patient/Observation.read patient/Observation.write", "launch/patient openid fhirUser",
	}
	for i, s := range seeds {
		f.Add(s, uint8(i))
	}
	e := newTestEngine(f)
	interactions := []Interaction{Read, VRead, HistoryInstance, SearchType, SearchSystem, HistoryType, HistorySystem, Create, Update, Patch, Delete, Operation}
	f.Fuzz(func(t *testing.T, scope string, which uint8) {
		p := principal(scope, "p1", "Patient/p1")
		if p.Scopes.HasContext(smart.ContextSystem) {
			return
		}
		in := Input{Principal: p, Interaction: interactions[int(which)%len(interactions)], Type: "Observation", ID: "o9"}
		switch in.Interaction {
		case SearchType, HistoryType:
			in.Query = &search.Query{Types: []string{"Observation"}}
		case SearchSystem, HistorySystem:
			in.Type = ""
			in.Query = &search.Query{}
		case Create, Update, Patch:
			in.Resource = []byte(obsP2)
		case Delete:
			in.Current = []byte(obsP2)
		case Operation:
			in.Type, in.ID, in.Operation = "Patient", "p2", "$everything"
		}
		d, err := e.Evaluate(context.Background(), in)
		if err != nil {
			return
		}
		if d.Allow && (in.Interaction == Create || in.Interaction == Update || in.Interaction == Patch || in.Interaction == Delete || in.Interaction == Operation) {
			t.Fatalf("scope %q allowed %s touching Patient/p2: %+v", scope, in.Interaction, d)
		}
		if d.Allow {
			if ok, _ := d.Filter.Check("Observation", []byte(obsP2)); ok {
				t.Fatalf("scope %q let Patient/p2's Observation through %s", scope, in.Interaction)
			}
			if ok, _ := d.Filter.Check("Patient", []byte(`{"resourceType":"Patient","id":"p2"}`)); ok {
				t.Fatalf("scope %q let Patient/p2 through %s", scope, in.Interaction)
			}
		}
	})
}
