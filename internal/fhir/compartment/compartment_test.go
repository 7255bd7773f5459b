package compartment_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

func registry(t *testing.T) *search.Registry {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestPatientDefinitionParams checks that every parameter the Patient compartment names is a
// reference parameter of its resource type that may point to a Patient.
func TestPatientDefinitionParams(t *testing.T) {
	reg := registry(t)
	d := compartment.Patient()
	if d.Type != "Patient" {
		t.Fatalf("Patient().Type = %q", d.Type)
	}
	types := d.ResourceTypes()
	if len(types) < 60 {
		t.Fatalf("only %d resource types in the Patient compartment", len(types))
	}
	for _, typ := range types {
		for _, code := range d.Params(typ) {
			p, ok := reg.Lookup(typ, code)
			if !ok {
				t.Errorf("%s.%s is not a search parameter", typ, code)
				continue
			}
			if p.Type != search.TypeReference {
				t.Errorf("%s.%s is a %s parameter", typ, code, p.Type)
			}
			if len(p.Targets) > 0 && !slices.Contains(p.Targets, "Patient") {
				t.Errorf("%s.%s cannot refer to a Patient (targets %v)", typ, code, p.Targets)
			}
		}
	}
	if got := d.Params("Observation"); !slices.Equal(got, []string{"subject", "performer"}) {
		t.Errorf("Params(Observation) = %v", got)
	}
	if got := d.Params("Organization"); len(got) != 0 {
		t.Errorf("Params(Organization) = %v, want none", got)
	}
}

func TestMembership(t *testing.T) {
	reg := registry(t)
	tests := []struct {
		name, typ, body string
		want            []string
	}{
		{"subject and performer", "Observation",
			`{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p2"},{"reference":"Practitioner/d"},{"reference":"Patient/p1"}]}`,
			[]string{"p1", "p2"}},
		{"versioned reference", "Observation", `{"resourceType":"Observation","subject":{"reference":"Patient/p1/_history/3"}}`, []string{"p1"}},
		{"a group subject is no patient", "Observation", `{"resourceType":"Observation","subject":{"reference":"Group/g"}}`, nil},
		{"absolute URL is not trusted", "Observation", `{"resourceType":"Observation","subject":{"reference":"https://elsewhere.example/fhir/Patient/p1"}}`, nil},
		{"identifier-only reference", "Observation", `{"resourceType":"Observation","subject":{"identifier":{"system":"urn:mrn","value":"p1"}}}`, nil},
		{"contained reference", "Observation", `{"resourceType":"Observation","subject":{"reference":"#p1"}}`, nil},
		{"parameter outside the compartment", "Observation", `{"resourceType":"Observation","focus":[{"reference":"Patient/p1"}]}`, nil},
		{"patient is in its own compartment", "Patient", `{"resourceType":"Patient","id":"p1"}`, []string{"p1"}},
		{"linked patient", "Patient", `{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"Patient/p0"},"type":"seealso"}]}`, []string{"p0", "p1"}},
		{"never in a compartment", "Organization", `{"resourceType":"Organization","id":"o1"}`, nil},
		{"encounter patient", "Encounter", `{"resourceType":"Encounter","subject":{"reference":"Patient/p9"}}`, []string{"p9"}},
		{"allergy recorder", "AllergyIntolerance", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/a"},"recorder":{"reference":"Patient/b"}}`, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := reg.Extract(tt.typ, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := compartment.Membership(tt.typ, entries); !slices.Equal(got, tt.want) {
				t.Errorf("Membership(%s) = %v, want %v", tt.typ, got, tt.want)
			}
		})
	}
}

// TestMembershipIgnoresForgedEntries: only entries of the right parameter, type and target
// count; an _id entry places only a Patient in its own compartment.
func TestMembershipIgnoresForgedEntries(t *testing.T) {
	entries := []search.Entry{
		{Param: "_id", Type: search.TypeToken, Code: "p1"},
		{Param: "subject", Type: search.TypeToken, Code: "Patient/p2"},
		{Param: "subject", Type: search.TypeReference, TargetType: "Patient", TargetID: "bad id"},
		{Param: "subject", Type: search.TypeReference, TargetType: "Practitioner", TargetID: "p3"},
		{Param: "subjectx", Type: search.TypeReference, TargetType: "Patient", TargetID: "p4"},
	}
	if got := compartment.Membership("Observation", entries); len(got) != 0 {
		t.Errorf("Membership = %v, want none", got)
	}
	if got := compartment.Membership("Patient", entries[:1]); !slices.Equal(got, []string{"p1"}) {
		t.Errorf("Membership(Patient) = %v, want [p1]", got)
	}
}

func TestSet(t *testing.T) {
	s, err := compartment.Default()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Types(); !slices.Equal(got, []string{"Patient"}) {
		t.Errorf("Types() = %v", got)
	}
	if _, ok := s.Lookup("Encounter"); ok {
		t.Error("Lookup(Encounter) found a definition that is not loaded")
	}
	entries := []search.Entry{{Param: "subject", Type: search.TypeReference, TargetType: "Patient", TargetID: "p1"}}
	if got := s.Memberships("Observation", entries); !slices.Equal(got, []compartment.Ref{{Type: "Patient", ID: "p1"}}) {
		t.Errorf("Memberships = %v", got)
	}
	if _, err := compartment.NewSet(compartment.Patient(), compartment.Patient()); !errors.Is(err, compartment.ErrDefinition) {
		t.Errorf("NewSet with a duplicate: error = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []string{
		`not json`,
		`{"resourceType":"Patient"}`,
		`{"resourceType":"CompartmentDefinition","code":"Nonsense"}`,
		`{"resourceType":"CompartmentDefinition","code":"Patient","resource":[{"code":"Nonsense","param":["x"]}]}`,
	}
	for _, s := range tests {
		if _, err := compartment.Parse([]byte(s)); !errors.Is(err, compartment.ErrDefinition) {
			t.Errorf("Parse(%s) error = %v, want ErrDefinition", s, err)
		}
	}
	d, err := compartment.Parse([]byte(`{"resourceType":"CompartmentDefinition","code":"Encounter","resource":[{"code":"Observation","param":["encounter"]},{"code":"Patient"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Type != "Encounter" || !slices.Equal(d.Params("Observation"), []string{"encounter"}) || len(d.Params("Patient")) != 0 {
		t.Errorf("Parse(Encounter) = %+v", d)
	}
	entries := []search.Entry{{Param: "encounter", Type: search.TypeReference, TargetType: "Encounter", TargetID: "e1"}}
	if got := d.Members("Observation", entries); !slices.Equal(got, []string{"e1"}) {
		t.Errorf("Encounter Members = %v", got)
	}
}
