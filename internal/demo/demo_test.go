package demo

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
)

type generated struct {
	typ, id string
	body    []byte
}

func generate(t testing.TB, opts Options) ([]generated, Summary) {
	t.Helper()
	var out []generated
	sum, err := Generate(opts, func(typ, id string, body []byte) error {
		out = append(out, generated{typ, id, body})
		return nil
	})
	if err != nil {
		t.Fatalf("Generate(%+v) = %v", opts, err)
	}
	return out, sum
}

var testNow = time.Date(2026, time.November, 23, 12, 0, 0, 0, time.UTC)

// Every generated resource passes the validator that guards every write.
func TestGenerateIsValid(t *testing.T) {
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	res, sum := generate(t, Options{Patients: 20, Seed: 7, Now: testNow})
	for _, r := range res {
		if err := v.Validate(r.typ, r.body); err != nil {
			var fe *fhir.Error
			detail := ""
			if errors.As(err, &fe) {
				detail = string(fhir.MarshalOutcome(fe.Outcome()))
			}
			t.Errorf("%s/%s is invalid: %v %s", r.typ, r.id, err, detail)
		}
	}
	if sum.Total != len(res) {
		t.Errorf("Summary.Total = %d, want %d", sum.Total, len(res))
	}
	perPatient := float64(sum.Total-sum.Resources["Organization"]-sum.Resources["Practitioner"]-sum.Resources["PractitionerRole"]) / 20
	if perPatient < 30 || perPatient > 60 {
		t.Errorf("%.1f resources per patient, want 30 to 60 (%s)", perPatient, sum)
	}
	for _, typ := range []string{"Organization", "Practitioner", "PractitionerRole", "Patient", "Encounter", "Observation", "Condition",
		"MedicationRequest", "AllergyIntolerance", "Immunization", "CareTeam", "DiagnosticReport", "Provenance"} {
		if sum.Resources[typ] == 0 {
			t.Errorf("no %s generated (%s)", typ, sum)
		}
	}
	if got := sum.Resources["Patient"]; got != 20 {
		t.Errorf("%d patients, want 20", got)
	}
}

// Ids are unique and valid, and every relative reference points at a generated resource.
func TestGenerateReferencesResolve(t *testing.T) {
	res, _ := generate(t, Options{Patients: 30, Seed: 3, Now: testNow})
	ids := map[string]bool{}
	for _, r := range res {
		key := r.typ + "/" + r.id
		if ids[key] {
			t.Errorf("%s generated twice", key)
		}
		if !fhir.ValidID(r.id) {
			t.Errorf("%s: invalid id", key)
		}
		ids[key] = true
	}
	for _, r := range res {
		var doc any
		if err := json.Unmarshal(r.body, &doc); err != nil {
			t.Fatal(err)
		}
		for _, ref := range references(doc) {
			if !ids[ref] {
				t.Errorf("%s/%s refers to %s, which was not generated", r.typ, r.id, ref)
			}
		}
	}
}

func references(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "reference" {
				out = append(out, s)
				continue
			}
			out = append(out, references(val)...)
		}
	case []any:
		for _, val := range x {
			out = append(out, references(val)...)
		}
	}
	return out
}

func TestGenerateIsDeterministic(t *testing.T) {
	digest := func(opts Options) string {
		res, _ := generate(t, opts)
		h := sha256.New()
		for _, r := range res {
			fmt.Fprintf(h, "%s/%s\n%s\n", r.typ, r.id, r.body)
		}
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	base := Options{Patients: 12, Seed: 42, Now: testNow}
	want := digest(base)
	tests := []struct {
		name string
		opts Options
		same bool
	}{
		{"same options", base, true},
		{"same day, another hour", Options{Patients: 12, Seed: 42, Now: testNow.Add(5 * time.Hour)}, true},
		{"same instant in another zone", Options{Patients: 12, Seed: 42, Now: testNow.In(time.FixedZone("X", 3600))}, true},
		{"another seed", Options{Patients: 12, Seed: 43, Now: testNow}, false},
		{"another day", Options{Patients: 12, Seed: 42, Now: testNow.AddDate(0, 0, 1)}, false},
	}
	for _, tt := range tests {
		if got := digest(tt.opts); (got == want) != tt.same {
			t.Errorf("%s: digest equal = %v, want %v", tt.name, got == want, tt.same)
		}
	}
	// A patient's record does not depend on how many patients follow it.
	few, _ := generate(t, Options{Patients: 5, Seed: 42, Now: testNow})
	many, _ := generate(t, Options{Patients: 9, Seed: 42, Now: testNow})
	for i := range few {
		if few[i].id != many[i].id || string(few[i].body) != string(many[i].body) {
			t.Fatalf("resource %d differs between 5 and 9 patients: %s/%s vs %s/%s", i, few[i].typ, few[i].id, many[i].typ, many[i].id)
		}
	}
}

func labels(body []byte) []string {
	var r struct {
		Meta struct {
			Security []struct{ Code string } `json:"security"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(body, &r)
	var out []string
	for _, s := range r.Meta.Security {
		out = append(out, s.Code)
	}
	return out
}

func TestSecurityLabels(t *testing.T) {
	res, sum := generate(t, Options{Patients: 100, Seed: 1, Now: testNow})
	clinical, labeled := 0, 0
	seen := map[string]bool{}
	for _, r := range res {
		switch r.typ {
		case "Organization", "Practitioner", "PractitionerRole", "Patient":
			continue
		}
		clinical++
		ls := labels(r.body)
		if len(ls) > 0 {
			labeled++
		}
		for _, l := range ls {
			seen[l] = true
		}
		if len(ls) > 0 && !slices.Contains(ls, "R") && !slices.Contains(ls, "V") {
			t.Errorf("%s/%s has sensitivity labels %v without a confidentiality code", r.typ, r.id, ls)
		}
	}
	share := float64(labeled) / float64(clinical)
	if share < 0.05 || share > 0.10 {
		t.Errorf("%.1f%% of clinical resources are labeled, want 5-10%%", share*100)
	}
	for _, l := range []string{"R", "V", "HIV", "PSY", "ETH", "SUD"} {
		if !seen[l] {
			t.Errorf("no resource labeled %s", l)
		}
	}
	if sum.Labeled != labeled {
		t.Errorf("Summary.Labeled = %d, want %d", sum.Labeled, labeled)
	}
}

// The records the demo logins and documentation rely on.
func TestWellKnownRecords(t *testing.T) {
	res, _ := generate(t, Options{Patients: 12, Seed: 99, Now: testNow})
	byKey := map[string][]byte{}
	for _, r := range res {
		byKey[r.typ+"/"+r.id] = r.body
	}
	for _, key := range []string{"Patient/example-alice", "Patient/example-bob", "Practitioner/example-smith"} {
		if byKey[key] == nil {
			t.Errorf("%s is missing", key)
		}
	}
	var alice struct {
		Gender    string `json:"gender"`
		BirthDate string `json:"birthDate"`
		Name      []struct {
			Given []string `json:"given"`
		} `json:"name"`
	}
	if err := json.Unmarshal(byKey["Patient/example-alice"], &alice); err != nil {
		t.Fatal(err)
	}
	if alice.Gender != "female" || alice.Name[0].Given[0] != "Alice" || alice.BirthDate > "2008" {
		t.Errorf("Patient/example-alice = %+v, want an adult woman named Alice", alice)
	}
	// Alice has vital signs and labs over time, and restricted HIV and psychiatric records.
	codesAt := map[string]map[string]bool{} // LOINC code -> dates
	aliceLabels := map[string]bool{}
	smithTeams := 0
	for _, r := range res {
		var o struct {
			Subject   struct{ Reference string } `json:"subject"`
			Code      json.RawMessage            `json:"code"`
			Effective string                     `json:"effectiveDateTime"`
			Member    []struct {
				Member struct{ Reference string } `json:"member"`
			} `json:"participant"`
		}
		if err := json.Unmarshal(r.body, &o); err != nil {
			t.Fatal(err)
		}
		if r.typ == "CareTeam" && slices.ContainsFunc(o.Member, func(m struct {
			Member struct{ Reference string } `json:"member"`
		}) bool {
			return m.Member.Reference == "Practitioner/example-smith"
		}) {
			smithTeams++
			if o.Subject.Reference == "Patient/example-alice" {
				smithTeams += 100
			}
		}
		if o.Subject.Reference != "Patient/example-alice" {
			continue
		}
		for _, l := range labels(r.body) {
			aliceLabels[l] = true
		}
		if r.typ == "Observation" {
			var cc struct{ Coding []struct{ Code string } }
			if err := json.Unmarshal(o.Code, &cc); err != nil || len(cc.Coding) == 0 {
				t.Fatalf("%s: code %s", r.id, o.Code)
			}
			c := cc.Coding[0].Code
			if codesAt[c] == nil {
				codesAt[c] = map[string]bool{}
			}
			codesAt[c][o.Effective[:10]] = true
		}
	}
	for _, c := range []string{"85354-9", "8867-4", "29463-7", "8302-2", "39156-5", "8310-5", "4548-4", "2345-7", "2093-3", "2160-0"} {
		if len(codesAt[c]) < 4 {
			t.Errorf("alice has LOINC %s on %d days, want at least 4", c, len(codesAt[c]))
		}
	}
	for _, l := range []string{"R", "HIV", "PSY"} {
		if !aliceLabels[l] {
			t.Errorf("no record of alice is labeled %s", l)
		}
	}
	if smithTeams < 100 || smithTeams%100 < 3 {
		t.Errorf("example-smith is on %d care teams (alice's: %v), want alice's and at least 3", smithTeams%100, smithTeams >= 100)
	}
}

func TestGenerateStopsOnEmitError(t *testing.T) {
	boom := errors.New("boom")
	n := 0
	_, err := Generate(Options{Patients: 5}, func(string, string, []byte) error {
		n++
		if n == 30 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Generate = %v, want the emit error", err)
	}
	if n != 30 {
		t.Errorf("emit called %d times after the error, want 30", n)
	}
}

func TestGenerateOptions(t *testing.T) {
	_, sum := generate(t, Options{Patients: 0})
	if got := sum.Resources["Patient"]; got != 2 {
		t.Errorf("Patients 0 made %d patients, want 2 (alice and bob)", got)
	}
	if _, err := Generate(Options{Patients: MaxPatients + 1}, func(string, string, []byte) error { return nil }); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Generate(too many) = %v, want ErrInvalidOptions", err)
	}
	if s := sum.String(); !strings.Contains(s, "Patient 2") {
		t.Errorf("Summary.String() = %q", s)
	}
}

func BenchmarkGenerate100(b *testing.B) {
	for b.Loop() {
		if _, err := Generate(Options{Patients: 100, Seed: 1, Now: testNow}, func(string, string, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
