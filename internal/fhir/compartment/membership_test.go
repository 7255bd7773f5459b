package compartment_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// The cross-check against the SQL store's compartment search is in
// internal/fhir/search/match_crosscheck_test.go (TestMembershipCrossCheckStore).

// sharedRegistry is built once: every Registry compiles its own Extractor on first use.
var sharedRegistry = sync.OnceValues(search.DefaultRegistry)

func sharedReg(t *testing.T) *search.Registry {
	t.Helper()
	reg, err := sharedRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newChecker(t *testing.T, set *compartment.Set) *compartment.MembershipChecker {
	t.Helper()
	m, err := compartment.NewMembership(sharedReg(t), set)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pat(id string) search.CompartmentRef { return search.CompartmentRef{Type: "Patient", ID: id} }

func TestMembershipChecker(t *testing.T) {
	m := newChecker(t, nil)
	tests := []struct {
		name string
		comp search.CompartmentRef
		typ  string
		body string
		want bool
	}{
		{"subject", pat("p1"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, true},
		{"another patient's subject", pat("p2"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, false},
		{"performer", pat("p2"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"}]}`, true},
		{"versioned reference", pat("p1"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1/_history/2"}}`, true},
		{"id prefix is not the id", pat("p"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, false},
		{"id is case-sensitive", pat("P1"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, false},
		{"group subject", pat("g1"), "Observation", `{"resourceType":"Observation","subject":{"reference":"Group/g1"}}`, false},
		{"absolute URL, even on this server", pat("p1"), "Observation", `{"resourceType":"Observation","subject":{"reference":"https://fhir.example.org/fhir/Patient/p1"}}`, false},
		{"identifier-only reference", pat("p1"), "Observation", `{"resourceType":"Observation","subject":{"identifier":{"value":"p1"}}}`, false},
		{"contained reference", pat("p1"), "Observation", `{"resourceType":"Observation","subject":{"reference":"#p1"}}`, false},
		{"parameter outside the definition", pat("p1"), "Observation", `{"resourceType":"Observation","focus":[{"reference":"Patient/p1"}]}`, false},
		{"no reference at all", pat("p1"), "Observation", `{"resourceType":"Observation","status":"final"}`, false},
		{"patient in its own compartment", pat("p1"), "Patient", `{"resourceType":"Patient","id":"p1"}`, true},
		{"another patient", pat("p2"), "Patient", `{"resourceType":"Patient","id":"p1"}`, false},
		{"patient without id", pat("p1"), "Patient", `{"resourceType":"Patient"}`, false},
		{"linked patient", pat("p0"), "Patient", `{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"Patient/p0"},"type":"seealso"}]}`, true},
		{"type never in the compartment", pat("p1"), "Organization", `{"resourceType":"Organization","id":"p1"}`, false},
		{"Device is not in the R4 definition", pat("p1"), "Device", `{"resourceType":"Device","patient":{"reference":"Patient/p1"}}`, false},
		{"encounter", pat("p9"), "Encounter", `{"resourceType":"Encounter","subject":{"reference":"Patient/p9"}}`, true},
		{"allergy recorder", pat("b"), "AllergyIntolerance", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/a"},"recorder":{"reference":"Patient/b"}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.InCompartment(tt.comp, tt.typ, []byte(tt.body))
			if err != nil {
				t.Fatalf("InCompartment: %v", err)
			}
			if got != tt.want {
				t.Errorf("InCompartment(%v, %s) = %v, want %v", tt.comp, tt.typ, got, tt.want)
			}
			// The store writes its idx_compartment rows with compartment.Membership.
			entries, err := sharedReg(t).Extract(tt.typ, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if store := slices.Contains(compartment.Membership(tt.typ, entries), tt.comp.ID); store != got {
				t.Errorf("the store's rows say %v", store)
			}
		})
	}
}

func TestMembershipCheckerErrors(t *testing.T) {
	m := newChecker(t, nil)
	obs := []byte(`{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`)
	tests := []struct {
		name string
		comp search.CompartmentRef
		typ  string
		body []byte
		is   error
	}{
		{"compartment type not loaded", search.CompartmentRef{Type: "Encounter", ID: "e1"}, "Observation", obs, compartment.ErrUnknownCompartment},
		{"unknown compartment type", search.CompartmentRef{Type: "Nonsense", ID: "p1"}, "Observation", obs, compartment.ErrUnknownCompartment},
		{"empty compartment type", search.CompartmentRef{ID: "p1"}, "Observation", obs, compartment.ErrUnknownCompartment},
		{"empty id", pat(""), "Observation", obs, nil},
		{"invalid id", pat("p 1"), "Observation", obs, nil},
		{"wrong body type", pat("p1"), "Patient", obs, search.ErrNotIndexable},
		{"not JSON", pat("p1"), "Observation", []byte(`{"resourceType"`), search.ErrNotIndexable},
		{"no body", pat("p1"), "Observation", nil, search.ErrNotIndexable},
		{"unknown resource type", pat("p1"), "Nonsense", []byte(`{"resourceType":"Nonsense"}`), search.ErrNotIndexable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := m.InCompartment(tt.comp, tt.typ, tt.body)
			if err == nil || ok {
				t.Fatalf("InCompartment = %v, %v; want false and an error", ok, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
	var nilChecker *compartment.MembershipChecker
	if ok, err := nilChecker.InCompartment(pat("p1"), "Observation", obs); ok || err == nil {
		t.Errorf("nil checker: %v, %v", ok, err)
	}
	if ok, err := new(compartment.MembershipChecker).InCompartment(pat("p1"), "Observation", obs); ok || err == nil {
		t.Errorf("zero checker: %v, %v", ok, err)
	}
}

func TestNewMembershipErrors(t *testing.T) {
	if _, err := compartment.NewMembership(nil, nil); err == nil {
		t.Error("NewMembership without a registry succeeded")
	}
	empty, err := compartment.NewSet()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compartment.NewMembership(sharedReg(t), empty); !errors.Is(err, compartment.ErrDefinition) {
		t.Errorf("empty set: %v", err)
	}
	// A definition naming a parameter that is not a reference (or not defined) is refused.
	for _, param := range []string{"code", "nonsense"} {
		d, err := compartment.Parse([]byte(`{"resourceType":"CompartmentDefinition","code":"Patient","resource":[{"code":"Observation","param":["` + param + `"]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		set, err := compartment.NewSet(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := compartment.NewMembership(sharedReg(t), set); !errors.Is(err, compartment.ErrDefinition) {
			t.Errorf("definition with Observation.%s: %v", param, err)
		}
	}
}

func TestWithParams(t *testing.T) {
	base := compartment.Patient()
	d, err := base.WithParams("Device", "patient")
	if err != nil {
		t.Fatal(err)
	}
	if len(base.Params("Device")) != 0 {
		t.Fatalf("WithParams modified the original: %v", base.Params("Device"))
	}
	if got := d.Params("Device"); !slices.Equal(got, []string{"patient"}) {
		t.Errorf("Params(Device) = %v", got)
	}
	if got := d.Params("Observation"); !slices.Equal(got, base.Params("Observation")) {
		t.Errorf("Params(Observation) = %v", got)
	}
	d2, err := d.WithParams("Observation", "focus", "subject")
	if err != nil {
		t.Fatal(err)
	}
	if got := d2.Params("Observation"); !slices.Equal(got, []string{"subject", "performer", "focus"}) {
		t.Errorf("Params(Observation) = %v", got)
	}
	if got := d.Params("Observation"); !slices.Equal(got, []string{"subject", "performer"}) {
		t.Errorf("WithParams modified its receiver: %v", got)
	}
	set, err := compartment.NewSet(d)
	if err != nil {
		t.Fatal(err)
	}
	m := newChecker(t, set)
	dev := []byte(`{"resourceType":"Device","patient":{"reference":"Patient/p1"}}`)
	if ok, err := m.InCompartment(pat("p1"), "Device", dev); !ok || err != nil {
		t.Errorf("Device with its patient parameter: %v, %v", ok, err)
	}
	if ok, err := m.InCompartment(pat("p2"), "Device", dev); ok || err != nil {
		t.Errorf("Device of another patient: %v, %v", ok, err)
	}
	for _, bad := range [][]string{{"Nonsense", "patient"}, {"Device"}, {"Device", ""}} {
		if _, err := base.WithParams(bad[0], bad[1:]...); !errors.Is(err, compartment.ErrDefinition) {
			t.Errorf("WithParams(%q) error = %v", bad, err)
		}
	}
	bad, err := base.WithParams("Device", "type") // a token parameter
	if err != nil {
		t.Fatal(err)
	}
	badSet, _ := compartment.NewSet(bad)
	if _, err := compartment.NewMembership(sharedReg(t), badSet); !errors.Is(err, compartment.ErrDefinition) {
		t.Errorf("NewMembership with Device.type: %v", err)
	}
}

func TestMembershipCheckerConcurrent(t *testing.T) {
	m := newChecker(t, nil)
	body := []byte(`{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures int
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, err := m.InCompartment(pat("p1"), "Observation", body); !ok || err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failures > 0 {
		t.Errorf("%d concurrent checks failed", failures)
	}
}

// FuzzInCompartment: on any body, InCompartment never panics, never answers true with an error,
// and agrees with the rows the store writes (compartment.Membership over the same entries).
func FuzzInCompartment(f *testing.F) {
	for _, s := range []struct{ typ, body, id string }{
		{"Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, "p1"},
		{"Observation", `{"resourceType":"Observation","subject":{"reference":"https://x/fhir/Patient/p1"}}`, "p1"},
		{"Patient", `{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"Patient/p2"}}]}`, "p2"},
		{"Patient", `{"resourceType":"Patient","id":"p 1"}`, "p 1"},
		{"Encounter", `{"resourceType":"Encounter","subject":{"reference":"Patient/p1/_history/1"}}`, "p1"},
		{"Observation", `{"resourceType":"Observation","subject":"Patient/p1"}`, "p1"},
	} {
		f.Add(s.typ, s.body, s.id)
	}
	reg, err := sharedRegistry()
	if err != nil {
		f.Fatal(err)
	}
	m, err := compartment.NewMembership(reg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, body, id string) {
		ok, err := m.InCompartment(pat(id), typ, []byte(body))
		if err != nil {
			if ok {
				t.Fatalf("true with an error: %v", err)
			}
			return
		}
		entries, err := reg.Extract(typ, []byte(body))
		if err != nil {
			t.Fatalf("InCompartment succeeded on a body Extract refuses: %v", err)
		}
		if store := slices.Contains(compartment.Membership(typ, entries), id); store != ok {
			t.Fatalf("InCompartment = %v, the store's rows say %v", ok, store)
		}
	})
}
