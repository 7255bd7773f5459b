package search_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// The adapters the policy engine needs.
var (
	_ policy.Matcher    = (*search.Matcher)(nil)
	_ policy.Membership = (*compartment.MembershipChecker)(nil)
)

// Hand-checked expectations of the Matcher; match_crosscheck_test.go checks that the SQL store
// agrees on a larger set.

var (
	mtOnce     sync.Once
	mtReg      *search.Registry
	mtM        *search.Matcher
	mtErr      error
	mtNow      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mtBase     = "https://fhir.example.org/fhir"
	mtParseOpt = search.ParseOptions{BaseURL: mtBase, Now: func() time.Time { return mtNow }}
)

func mtMatcher(t testing.TB) (*search.Registry, *search.Matcher) {
	t.Helper()
	mtOnce.Do(func() {
		if mtReg, mtErr = search.DefaultRegistry(); mtErr == nil {
			mtM, mtErr = search.NewMatcher(mtReg)
		}
	})
	if mtErr != nil {
		t.Fatal(mtErr)
	}
	return mtReg, mtM
}

// mtClauses parses "k=v&k2=v2" (values as written, not URL-encoded) for typ.
func mtClauses(t testing.TB, typ, query string) []search.Clause {
	t.Helper()
	reg, _ := mtMatcher(t)
	var out []search.Clause
	for part := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(part, "=")
		c, err := search.ParseClause(reg, []string{typ}, k, v, mtParseOpt)
		if err != nil {
			t.Fatalf("ParseClause(%s=%s): %v", k, v, err)
		}
		out = append(out, c)
	}
	return out
}

const mtObs = `{"resourceType":"Observation","id":"o1","meta":{"lastUpdated":"2025-06-01T12:00:00.250Z","tag":[{"system":"http://tags","code":"t1"}]},
 "status":"final",
 "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],
 "code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}],"text":"BP sys"},
 "subject":{"reference":"Patient/p1"},
 "performer":[{"reference":"https://fhir.example.org/fhir/Practitioner/d1"},{"reference":"https://elsewhere.example/fhir/Practitioner/d2"},{"identifier":{"system":"urn:npi","value":"N9"}}],
 "basedOn":[{"reference":"ServiceRequest/sr1/_history/2"}],
 "effectivePeriod":{"start":"2020-01-15T10:00:00Z"},
 "valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"},
 "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg"}}],
 "identifier":[{"system":"http://obs","value":"A-1","type":{"coding":[{"system":"http://types","code":"FILL"}]}}]}`

const mtPat = `{"resourceType":"Patient","id":"p1","name":[{"family":"Çelik","given":["Ayşe  Nur"]}],"gender":"female","birthDate":"1980-03",
 "address":[{"line":["1 Main St"],"city":"Zürich"}],"telecom":[{"system":"phone","value":"+41 44"}]}`

const mtQR = `{"resourceType":"QuestionnaireResponse","id":"q1","status":"completed","questionnaire":"http://forms.example/Questionnaire/phq9|2.0"}`

const mtVS = `{"resourceType":"ValueSet","id":"vs1","status":"active","url":"http://acme.org/fhir/ValueSet/a/b"}`

const mtRisk = `{"resourceType":"RiskAssessment","id":"r1","status":"final","prediction":[{"probabilityDecimal":0.25},{"probabilityRange":{"low":{"value":0.4},"high":{"value":0.6}}}]}`

func TestMatcherMatches(t *testing.T) {
	tests := []struct {
		typ, body, query string
		want             bool
	}{
		// string: prefix of a normalised word group, :exact as written, :contains anywhere.
		{"Patient", mtPat, "name=celik", true},
		{"Patient", mtPat, "name=CEL", true},
		{"Patient", mtPat, "name=ayse nur", true},
		{"Patient", mtPat, "name=elik", false},
		{"Patient", mtPat, "name:exact=Çelik", true},
		{"Patient", mtPat, "name:exact=celik", false},
		{"Patient", mtPat, "name:exact=Çeli", false},
		{"Patient", mtPat, "name:contains=eli", true},
		{"Patient", mtPat, "name:contains=xyz", false},
		{"Patient", mtPat, "address=main", false}, // "1 main st" starts with 1
		{"Patient", mtPat, "address=1 main", true},
		{"Patient", mtPat, "address-city=zur,bern", true},
		{"Patient", mtPat, "address-city=bern", false},
		// token
		{"Observation", mtObs, "category=laboratory", true},
		{"Observation", mtObs, "category=vital-signs", false},
		{"Observation", mtObs, "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", true},
		{"Observation", mtObs, "category=http://other|laboratory", false},
		{"Observation", mtObs, "category=|laboratory", false}, // the coding has a system
		{"Observation", mtObs, "category=http://terminology.hl7.org/CodeSystem/observation-category|", true},
		{"Observation", mtObs, "category=vital-signs,laboratory", true},
		{"Observation", mtObs, "category:not=laboratory", false},
		{"Observation", mtObs, "category:not=vital-signs", true},
		{"Observation", mtObs, "code:text=systolic", true},
		{"Observation", mtObs, "code:text=bp", true},
		{"Observation", mtObs, "code:text=sys", true}, // "bp sys ..." has a word starting with sys
		{"Observation", mtObs, "code:text=ystolic", false},
		{"Observation", mtObs, "identifier=A-1", true},
		{"Observation", mtObs, "identifier=a-1", false}, // tokens are case-sensitive
		{"Observation", mtObs, "identifier:of-type=http://types|FILL|A-1", true},
		{"Observation", mtObs, "identifier:of-type=http://types|FILL|A-2", false},
		{"Observation", mtObs, "status=final", true},
		{"Patient", mtPat, "gender:not=male", true},
		{"Patient", mtPat, "telecom=+41 44", true},
		// :missing
		{"Observation", mtObs, "subject:missing=false", true},
		{"Observation", mtObs, "subject:missing=true", false},
		{"Observation", mtObs, "device:missing=true", true},
		{"Observation", mtObs, "device:missing=true,false", true},
		{"Patient", mtPat, "gender:missing=false", true},
		{"Patient", mtPat, "link:missing=true", true},
		{"Patient", mtPat, "deceased:missing=true", false}, // deceased.exists() and ...: indexed as false
		// reference
		{"Observation", mtObs, "subject=Patient/p1", true},
		{"Observation", mtObs, "subject=p1", true},
		{"Observation", mtObs, "subject:Patient=p1", true},
		{"Observation", mtObs, "subject=Patient/p2", false},
		{"Observation", mtObs, "subject=Group/p1", false},
		{"Observation", mtObs, "subject=https://fhir.example.org/fhir/Patient/p1", true},
		{"Observation", mtObs, "subject=https://elsewhere.example/fhir/Patient/p1", false},
		{"Observation", mtObs, "performer=Practitioner/d1", true},  // absolute on the local base
		{"Observation", mtObs, "performer=Practitioner/d2", false}, // absolute on another server
		{"Observation", mtObs, "performer=https://elsewhere.example/fhir/Practitioner/d2", true},
		{"Observation", mtObs, "performer:identifier=urn:npi|N9", true},
		{"Observation", mtObs, "performer:identifier=N9", true},
		{"Observation", mtObs, "performer:identifier=urn:x|N9", false},
		{"Observation", mtObs, "based-on=ServiceRequest/sr1", true},
		{"Observation", mtObs, "based-on=ServiceRequest/sr1/_history/7", true},
		{"QuestionnaireResponse", mtQR, "questionnaire=http://forms.example/Questionnaire/phq9", true},
		{"QuestionnaireResponse", mtQR, "questionnaire=http://forms.example/Questionnaire/phq9|2.0", true},
		{"QuestionnaireResponse", mtQR, "questionnaire=http://forms.example/Questionnaire/gad7", false},
		// date: the stored period [2020-01-15T10:00:00Z, open end)
		{"Observation", mtObs, "date=2020-01-15", false}, // not contained in the day
		{"Observation", mtObs, "date=ge2020-01-15", true},
		{"Observation", mtObs, "date=gt2030", true},
		{"Observation", mtObs, "date=lt2020-01-15T10:00:00Z", false},
		{"Observation", mtObs, "date=lt2020-01-15T10:00:01Z", true},
		{"Observation", mtObs, "date=le2020-01-14", false},
		{"Observation", mtObs, "date=sa2020-01-14", true},
		{"Observation", mtObs, "date=sa2020-01-15", false},
		{"Observation", mtObs, "date=eb2030", false},
		{"Observation", mtObs, "date=ne2020", true},
		{"Observation", mtObs, "date=ap2020-01-15", true},
		{"Patient", mtPat, "birthdate=1980", true},
		{"Patient", mtPat, "birthdate=1980-03-02", false},
		{"Patient", mtPat, "birthdate=ap1980-03-02", true},
		{"Patient", mtPat, "birthdate=ge1980-03-31", false}, // the store's ge: above the value, or within it
		{"Patient", mtPat, "birthdate=ge1980-03", true},
		{"Patient", mtPat, "birthdate=gt1980-03-31", false},
		{"Patient", mtPat, "birthdate=eb1980-04-01", true},
		// _id and _lastUpdated, from the resource itself
		{"Observation", mtObs, "_id=o1", true},
		{"Observation", mtObs, "_id=o2,o1", true},
		{"Observation", mtObs, "_id=o2", false},
		{"Observation", mtObs, "_lastUpdated=2025-06-01", true},
		{"Observation", mtObs, "_lastUpdated=ge2025-06-01T12:00:00.250Z", true},
		{"Observation", mtObs, "_lastUpdated=gt2025-06-01T12:00:00.250Z", false},
		{"Observation", mtObs, "_lastUpdated=gt2025-06-01T12:00:00.2495Z", true},
		{"Observation", mtObs, "_lastUpdated=lt2025-06-01T12:00:00.2505Z", true},
		{"Observation", mtObs, "_tag=http://tags|t1", true},
		{"Observation", mtObs, "_tag=t2", false},
		// number: 0.25 and the range ends 0.4, 0.6
		{"RiskAssessment", mtRisk, "probability=0.25", true},
		{"RiskAssessment", mtRisk, "probability=0.3", true}, // [0.25, 0.35)
		{"RiskAssessment", mtRisk, "probability=0.2", false},
		{"RiskAssessment", mtRisk, "probability=gt0.6", false},
		{"RiskAssessment", mtRisk, "probability=ge0.6", true},
		{"RiskAssessment", mtRisk, "probability=lt0.25", false},
		{"RiskAssessment", mtRisk, "probability=ne0.25", true},
		{"RiskAssessment", mtRisk, "probability=ap0.27", true},
		// quantity
		{"Observation", mtObs, "value-quantity=120", true},
		{"Observation", mtObs, "value-quantity=120|http://unitsofmeasure.org|mm[Hg]", true},
		{"Observation", mtObs, "value-quantity=120|http://unitsofmeasure.org|kg", false},
		{"Observation", mtObs, "value-quantity=120||mmHg", true},
		{"Observation", mtObs, "value-quantity=120||mm[Hg]", true},
		{"Observation", mtObs, "value-quantity=120||kg", false},
		{"Observation", mtObs, "value-quantity=120|http://unitsofmeasure.org|", true},
		{"Observation", mtObs, "value-quantity=gt120", false},
		{"Observation", mtObs, "value-quantity=ge120", true},
		{"Observation", mtObs, "value-quantity=ne119.9", true},
		{"Observation", mtObs, "value-quantity=1e2", true}, // [50, 150)
		// composite: first a token, then the second component
		{"Observation", mtObs, "code-value-quantity=http://loinc.org|8480-6$120", true},
		{"Observation", mtObs, "code-value-quantity=8480-6$gt130", false},
		{"Observation", mtObs, "code-value-quantity=8462-4$120", false},
		{"Observation", mtObs, "component-code-value-quantity=8462-4$80||mmHg", true}, // no unit code: the unit as written
		{"Observation", mtObs, "component-code-value-quantity=8462-4$80|http://unitsofmeasure.org|mm[Hg]", false},
		// uri
		{"ValueSet", mtVS, "url=http://acme.org/fhir/ValueSet/a/b", true},
		{"ValueSet", mtVS, "url=http://acme.org/fhir/ValueSet/a", false},
		{"ValueSet", mtVS, "url:below=http://acme.org/fhir/", true},
		{"ValueSet", mtVS, "url:below=http://acme.org/fhir/ValueSet/a/b/c", false},
		{"ValueSet", mtVS, "url:above=http://acme.org/fhir/ValueSet/a/b/c", true},
		{"ValueSet", mtVS, "url:above=http://acme.org/fhir/ValueSet/a", false},
		// AND of clauses, OR of values
		{"Observation", mtObs, "category=laboratory&code=8480-6&subject=Patient/p1", true},
		{"Observation", mtObs, "category=laboratory&code=29463-7", false},
		{"Observation", mtObs, "category=laboratory&subject=Patient/p2,Patient/p1", true},
	}
	_, m := mtMatcher(t)
	for _, tt := range tests {
		t.Run(tt.typ+"?"+tt.query, func(t *testing.T) {
			got, err := m.Matches(tt.typ, []byte(tt.body), mtClauses(t, tt.typ, tt.query))
			if err != nil {
				t.Fatalf("Matches: %v", err)
			}
			if got != tt.want {
				t.Errorf("Matches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatcherNoClauses(t *testing.T) {
	_, m := mtMatcher(t)
	if ok, err := m.Matches("Observation", []byte(mtObs), nil); !ok || err != nil {
		t.Errorf("no clauses: %v, %v; want true", ok, err)
	}
	// The body must still be a resource of the type.
	if ok, err := m.Matches("Patient", []byte(mtObs), nil); ok || err == nil {
		t.Errorf("no clauses, wrong type: %v, %v; want an error", ok, err)
	}
}

// TestMatcherOtherRegistry: clauses parsed with another registry built from the same
// definitions are evaluated like the matcher's own.
func TestMatcherOtherRegistry(t *testing.T) {
	_, m := mtMatcher(t)
	other, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	c, err := search.ParseClause(other, []string{"Observation"}, "category", "laboratory", mtParseOpt)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := m.Matches("Observation", []byte(mtObs), []search.Clause{c}); !ok || err != nil {
		t.Errorf("Matches = %v, %v; want true", ok, err)
	}
}

// TestMatcherBodyWithoutID: a body not stored yet has no id and no lastUpdated; constraints on
// them cannot hold.
func TestMatcherBodyWithoutID(t *testing.T) {
	_, m := mtMatcher(t)
	body := []byte(`{"resourceType":"Observation","status":"final"}`)
	for _, q := range []string{"_id=o1", "_lastUpdated=ne2020", "_lastUpdated=gt1900"} {
		if ok, err := m.Matches("Observation", body, mtClauses(t, "Observation", q)); ok || err != nil {
			t.Errorf("%s: %v, %v; want false", q, ok, err)
		}
	}
}

func TestMatcherErrors(t *testing.T) {
	reg, m := mtMatcher(t)
	param := func(typ, code string) *search.Param {
		p, ok := reg.Lookup(typ, code)
		if !ok {
			t.Fatalf("no %s.%s", typ, code)
		}
		return p
	}
	parsed := func(typ, key, value string) search.Clause {
		c, err := search.ParseClause(reg, []string{typ}, key, value, mtParseOpt)
		if err != nil {
			t.Fatalf("ParseClause(%s=%s): %v", key, value, err)
		}
		return c
	}
	category, date, code := param("Observation", "category"), param("Observation", "date"), param("Observation", "code")
	withModifier := func(c search.Clause, mod string) search.Clause { c.Modifier = mod; return c }
	cvq := parsed("Observation", "code-value-quantity", "8480-6$120")
	cvq.Values[0].Components = cvq.Values[0].Components[:1]
	tests := []struct {
		name, typ, body string
		clauses         []search.Clause
		notEvaluable    bool // the error wraps ErrNotEvaluable
	}{
		{"chain", "Observation", mtObs, []search.Clause{parsed("Observation", "subject:Patient.name", "x")}, true},
		{"has", "Patient", mtPat, []search.Clause{parsed("Patient", "_has:Observation:patient:code", "8480-6")}, true},
		{"chain behind a matching clause", "Observation", mtObs, []search.Clause{parsed("Observation", "category", "laboratory"), parsed("Observation", "subject:Patient.name", "x")}, true},
		{"no parameter", "Observation", mtObs, []search.Clause{{Values: []search.Value{{Raw: "x"}}}}, true},
		{"no values", "Observation", mtObs, []search.Clause{{Param: category}}, true},
		{"unknown modifier", "Observation", mtObs, []search.Clause{withModifier(parsed("Observation", "category", "laboratory"), "below")}, true},
		{"exact on a date", "Observation", mtObs, []search.Clause{withModifier(parsed("Observation", "date", "2020"), "exact")}, true},
		{"not on a string", "Patient", mtPat, []search.Clause{withModifier(parsed("Patient", "name", "x"), "not")}, true},
		{"modifier on _id", "Observation", mtObs, []search.Clause{withModifier(parsed("Observation", "_id", "o1"), "not")}, true},
		{"hand-made token without code", "Observation", mtObs, []search.Clause{{Param: category, Values: []search.Value{{Raw: "laboratory"}}}}, true},
		{"hand-made token without code under :not", "Observation", mtObs, []search.Clause{{Param: category, Modifier: "not", Values: []search.Value{{Raw: "x"}}}}, true},
		{"hand-made string text", "Patient", mtPat, []search.Clause{{Param: param("Patient", "name"), Values: []search.Value{{Raw: "zzz"}}}}, true},
		{"hand-made date without prefix", "Observation", mtObs, []search.Clause{{Param: date, Values: []search.Value{{Raw: "2020", Low: 0, High: 1}}}}, true},
		{"hand-made date with an empty range", "Observation", mtObs, []search.Clause{{Param: date, Values: []search.Value{{Raw: "2020", Prefix: "ne", Low: 2, High: 1}}}}, true},
		{"hand-made reference without id", "Observation", mtObs, []search.Clause{{Param: param("Observation", "subject"), Values: []search.Value{{Raw: "Patient/p1"}}}}, true},
		{"reference type against the :Type modifier", "Observation", mtObs, []search.Clause{func() search.Clause {
			c := parsed("Observation", "subject:Patient", "p1")
			c.Values[0].RefType = "Group"
			return c
		}()}, true},
		{"hand-made empty value", "Observation", mtObs, []search.Clause{{Param: code, Values: []search.Value{{HasSystem: true, System: "http://loinc.org", Code: "8480-6"}}}}, true},
		{"missing with a bad value", "Observation", mtObs, []search.Clause{{Param: code, Modifier: "missing", Values: []search.Value{{Raw: "yes", Missing: true}}}}, true},
		{"composite with one component", "Observation", mtObs, []search.Clause{cvq}, true},
		{"parameter of another type", "Observation", mtObs, []search.Clause{parsed("Patient", "name", "x")}, true},
		{"same code on another type", "Practitioner", `{"resourceType":"Practitioner","name":[{"family":"X"}]}`, []search.Clause{parsed("Patient", "name", "x")}, true},
		{"special parameter", "Location", `{"resourceType":"Location"}`, []search.Clause{{Param: param("Location", "near"), Values: []search.Value{{Raw: "1|2"}}}}, true},
		{"wrong resource type", "Patient", mtObs, mtClauses(t, "Patient", "gender=male"), false},
		{"not JSON", "Observation", `{"resourceType":`, mtClauses(t, "Observation", "status=final"), false},
		{"not an object", "Observation", `[1]`, mtClauses(t, "Observation", "status=final"), false},
		{"unknown type", "Nonsense", `{"resourceType":"Nonsense"}`, []search.Clause{parsed("Observation", "status", "final")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := m.Matches(tt.typ, []byte(tt.body), tt.clauses)
			if err == nil || ok {
				t.Fatalf("Matches = %v, %v; want false and an error", ok, err)
			}
			if tt.notEvaluable && !errors.Is(err, search.ErrNotEvaluable) {
				t.Errorf("error %v does not wrap ErrNotEvaluable", err)
			}
		})
	}
}

func TestNewMatcherErrors(t *testing.T) {
	if _, err := search.NewMatcher(nil); err == nil {
		t.Error("NewMatcher(nil) succeeded")
	}
	var m *search.Matcher
	if ok, err := m.Matches("Observation", []byte(mtObs), nil); ok || err == nil {
		t.Errorf("nil Matcher: %v, %v", ok, err)
	}
	if ok, err := new(search.Matcher).Matches("Observation", []byte(mtObs), nil); ok || err == nil {
		t.Errorf("zero Matcher: %v, %v", ok, err)
	}
}

// TestMatcherConcurrent runs one Matcher from many goroutines (go test -race).
func TestMatcherConcurrent(t *testing.T) {
	_, m := mtMatcher(t)
	clauses := mtClauses(t, "Observation", "category=laboratory&code:text=systolic&date=ge2020&value-quantity=gt100")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for range 100 {
				ok, err := m.Matches("Observation", []byte(mtObs), clauses)
				if err != nil || !ok {
					errs <- errors.Join(err, errors.New("concurrent Matches did not match"))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// FuzzMatcher runs arbitrary clauses over arbitrary bodies: Matches never panics, never matches
// with an error, and keeps the algebra of the SQL it mirrors: a token clause and its :not are
// complements, so are :missing=true and :missing=false, and repeating a clause changes nothing.
func FuzzMatcher(f *testing.F) {
	seeds := []struct{ typ, body, key, value string }{
		{"Observation", mtObs, "category", "laboratory"},
		{"Observation", mtObs, "code", "http://loinc.org|8480-6"},
		{"Observation", mtObs, "date", "ap2020-01"},
		{"Observation", mtObs, "subject", "Patient/p1"},
		{"Observation", mtObs, "performer:identifier", "urn:npi|N9"},
		{"Observation", mtObs, "value-quantity", "le1e3||mmHg"},
		{"Observation", mtObs, "code-value-quantity", "8480-6$120"},
		{"Observation", mtObs, "subject:missing", "true"},
		{"Observation", mtObs, "_lastUpdated", "ne2025"},
		{"Patient", mtPat, "name", "ÇEL"},
		{"Patient", mtPat, "name:contains", "li"},
		{"Patient", mtPat, "identifier:of-type", "a|b|c"},
		{"ValueSet", mtVS, "url:above", "http://acme.org/fhir/ValueSet/a/b/c"},
		{"RiskAssessment", mtRisk, "probability", "gt0.3"},
		{"Observation", `{"resourceType":"Observation","valueQuantity":{"value":"x"},"effectivePeriod":{"start":5}}`, "value-quantity", "5"},
		{"Observation", `{"resourceType":"Observation","subject":{"reference":"#x"}}`, "subject", "x"},
	}
	for _, s := range seeds {
		f.Add(s.typ, s.body, s.key, s.value)
	}
	reg, m := mtMatcher(f)
	f.Fuzz(func(t *testing.T, typ, body, key, value string) {
		c, err := search.ParseClause(reg, []string{typ}, key, value, mtParseOpt)
		if err != nil {
			return
		}
		ok, err := m.Matches(typ, []byte(body), []search.Clause{c})
		if err != nil {
			if ok {
				t.Fatalf("Matches returned true with an error: %v", err)
			}
			return
		}
		if again, err := m.Matches(typ, []byte(body), []search.Clause{c, c}); err != nil || again != ok {
			t.Fatalf("a repeated clause: %v, %v; alone %v", again, err, ok)
		}
		var inverse search.Clause
		switch {
		case c.Param != nil && c.Param.Type == search.TypeToken && c.Modifier == "" && c.Param.Code != "_id":
			inverse = c
			inverse.Modifier = "not"
		case c.Modifier == "missing":
			inverse = c
			inverse.Values = make([]search.Value, len(c.Values))
			for i, v := range c.Values {
				v.Missing = !v.Missing
				if v.Missing {
					v.Raw = "true"
				} else {
					v.Raw = "false"
				}
				inverse.Values[i] = v
			}
			if len(c.Values) != 1 {
				return // true,false matches everything; its inverse too
			}
		default:
			return
		}
		not, err := m.Matches(typ, []byte(body), []search.Clause{inverse})
		if err != nil {
			t.Fatalf("the inverse clause failed: %v", err)
		}
		if not == ok {
			t.Fatalf("%s=%s and its inverse both give %v", key, value, ok)
		}
	})
}

// TestPolicyWiring runs the policy engine on the real Matcher and MembershipChecker: a granular
// patient scope lets out only the patient's resources of the granted category.
func TestPolicyWiring(t *testing.T) {
	reg, m := mtMatcher(t)
	mc, err := compartment.NewMembership(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(policy.Config{Registry: reg, Matcher: m, Membership: mc, BaseURL: mtBase})
	if err != nil {
		t.Fatal(err)
	}
	scopes, dropped := smart.ParseScopes("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory patient/Patient.rs")
	if len(dropped) > 0 || len(scopes) != 2 {
		t.Fatalf("scopes %v, dropped %v", scopes, dropped)
	}
	p := &authn.Principal{Subject: "s", ClientID: "c", JTI: "j", Scopes: scopes, Patient: "p1"}
	obs := func(patient, category string) []byte {
		return []byte(`{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/` + patient + `"},` +
			`"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"` + category + `"}]}]}`)
	}
	tests := []struct {
		name string
		typ  string
		body []byte
		want bool
	}{
		{"own laboratory result", "Observation", obs("p1", "laboratory"), true},
		{"own vital sign", "Observation", obs("p1", "vital-signs"), false},
		{"another patient's laboratory result", "Observation", obs("p2", "laboratory"), false},
		{"own record", "Patient", []byte(`{"resourceType":"Patient","id":"p1"}`), true},
		{"another patient", "Patient", []byte(`{"resourceType":"Patient","id":"p2"}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Evaluate(context.Background(), policy.Input{Principal: p, Interaction: policy.Read, Type: tt.typ, ID: "x", Resource: tt.body})
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if d.Allow != tt.want {
				t.Errorf("read: Allow = %v (%v), want %v", d.Allow, d.Reasons, tt.want)
			}
			sd, err := e.Evaluate(context.Background(), policy.Input{Principal: p, Interaction: policy.SearchType, Type: tt.typ,
				Query: &search.Query{Types: []string{tt.typ}}})
			if err != nil || !sd.Allow {
				t.Fatalf("search: %+v, %v", sd, err)
			}
			if ok, why := sd.Filter.Check(tt.typ, tt.body); ok != tt.want {
				t.Errorf("search filter: %v (%s), want %v", ok, why, tt.want)
			}
		})
	}
}
