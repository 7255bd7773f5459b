package search_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// The cross-check: the same resources written to a real SQL store, the same parsed queries run
// by the store's Search and by the Matcher (and compartment searches by the MembershipChecker)
// over every stored body. The two must find exactly the same resources: the policy engine's
// post-check of a resource must agree with the query bound the store applied.

const xBase = "https://fhir.example.org/fhir"

var xNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var xResources = []struct{ typ, id, body string }{
	{"Organization", "org-1", `{"resourceType":"Organization","name":"Acme Health","identifier":[{"system":"http://orgs","value":"A1"}],"active":true}`},
	{"Organization", "org-2", `{"resourceType":"Organization","name":"Other Clinic","address":[{"city":"Bern"}]}`},
	{"Practitioner", "dr-1", `{"resourceType":"Practitioner","name":[{"family":"Smith","given":["Jane"]}]}`},
	{"Patient", "pat-1", `{"resourceType":"Patient","active":true,"name":[{"family":"Chalmers","given":["Peter","James"]}],"gender":"male","birthDate":"1974-12-25",
		"identifier":[{"system":"http://ids","value":"111","type":{"text":"Medical record","coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]}}],
		"telecom":[{"system":"phone","value":"555-1234"},{"system":"email","value":"peter@example.org"}],
		"address":[{"city":"Zürich","postalCode":"8000"}],"deceasedBoolean":false,
		"managingOrganization":{"reference":"Organization/org-1"}}`},
	{"Patient", "pat-2", `{"resourceType":"Patient","name":[{"family":"Müller","given":["Petra"]}],"gender":"female","birthDate":"1980-03",
		"identifier":[{"system":"http://ids","value":"222"}],"managingOrganization":{"reference":"https://fhir.example.org/fhir/Organization/org-2"},
		"link":[{"other":{"reference":"Patient/pat-1"},"type":"seealso"}]}`},
	{"Patient", "pat-3", `{"resourceType":"Patient","name":[{"given":["Anne"]}],"identifier":[{"value":"333"}],
		"generalPractitioner":[{"reference":"https://other.example.org/fhir/Practitioner/dr-1"}]}`},
	{"Observation", "obs-1", `{"resourceType":"Observation","status":"final","meta":{"tag":[{"system":"http://example.org/tags","code":"t1"}],"profile":["http://example.org/StructureDefinition/bp"]},
		"identifier":[{"system":"http://obs","value":"O-1"}],
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
		"subject":{"reference":"Patient/pat-1"},"performer":[{"reference":"Practitioner/dr-1"}],"effectiveDateTime":"2020-01-15T10:00:00Z",
		"valueQuantity":{"value":120,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"},
		"component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"valueQuantity":{"value":80,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}]}`},
	{"Observation", "obs-2", `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},
		"subject":{"reference":"Patient/pat-1"},"effectiveDateTime":"2021-06","valueQuantity":{"value":70.5,"unit":"kg"}}`},
	{"Observation", "obs-3", `{"resourceType":"Observation","status":"amended",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8480-6","display":"Systolic blood pressure"}]},
		"subject":{"reference":"https://fhir.example.org/fhir/Patient/pat-2"},"effectivePeriod":{"start":"2019-12-31","end":"2020-01-20"},
		"valueQuantity":{"value":135,"unit":"mmHg","system":"http://unitsofmeasure.org","code":"mm[Hg]"}}`},
	{"Observation", "obs-4", `{"resourceType":"Observation","status":"preliminary",
		"code":{"coding":[{"system":"http://other","code":"8480-6"}]},"subject":{"reference":"Group/g-1"},
		"focus":[{"reference":"https://other.example.org/fhir/Patient/pat-1"}],"effectivePeriod":{"start":"2022-01-01"},
		"valueCodeableConcept":{"text":"Positive result"}}`},
	{"Observation", "obs-5", `{"resourceType":"Observation","status":"final","code":{"text":"Free text thing"},
		"category":[{"coding":[{"code":"laboratory"}]}],"subject":{"reference":"Patient/pat-3"},"valueString":"abc def",
		"effectiveInstant":"2023-05-05T05:05:05.123Z"}`},
	{"Observation", "obs-6", `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"social-history"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"2339-0","display":"Glucose"}]},
		"subject":{"identifier":{"system":"urn:mrn","value":"M1"}},"performer":[{"reference":"Patient/pat-2"}],
		"valueQuantity":{"value":5.5,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}}`},
	{"Condition", "cond-1", `{"resourceType":"Condition","subject":{"reference":"Patient/pat-1"},
		"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],
		"code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}]},
		"onsetDateTime":"2010","recordedDate":"2010-05-01"}`},
	{"Condition", "cond-2", `{"resourceType":"Condition","subject":{"reference":"Patient/pat-2"},"asserter":{"reference":"Patient/pat-3"},
		"code":{"text":"Headache"},"onsetPeriod":{"start":"2021-02-01","end":"2021-02-03"},"abatementString":"resolved"}`},
	{"RiskAssessment", "ra-1", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/pat-1"},"prediction":[{"probabilityDecimal":0.25}]}`},
	{"RiskAssessment", "ra-2", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/pat-2"},"prediction":[{"probabilityDecimal":100}]}`},
	{"RiskAssessment", "ra-3", `{"resourceType":"RiskAssessment","status":"final","subject":{"reference":"Patient/pat-3"},"prediction":[{"probabilityRange":{"low":{"value":0.4},"high":{"value":0.6}}}]}`},
	{"ValueSet", "vs-1", `{"resourceType":"ValueSet","status":"active","name":"Alpha","url":"http://acme.org/fhir/ValueSet/a","version":"1"}`},
	{"ValueSet", "vs-2", `{"resourceType":"ValueSet","status":"active","name":"Beta","url":"http://acme.org/fhir/ValueSet/a/b"}`},
	{"ValueSet", "vs-3", `{"resourceType":"ValueSet","status":"draft","name":"Other","url":"http://other.org/x"}`},
	{"Encounter", "enc-1", `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
		"subject":{"reference":"Patient/pat-1"},"period":{"start":"2020-01-15T09:00:00Z","end":"2020-01-15T11:00:00Z"},
		"length":{"value":120,"unit":"min","system":"http://unitsofmeasure.org","code":"min"}}`},
	{"Encounter", "enc-2", `{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
		"subject":{"reference":"Patient/pat-2"},"period":{"start":"2024-02-01"}}`},
	{"Device", "dev-1", `{"resourceType":"Device","patient":{"reference":"Patient/pat-1"},"type":{"text":"Insulin pump"},"status":"active"}`},
	{"MedicationRequest", "mr-1", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/pat-2"},
		"medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975"}]},
		"authoredOn":"2021-03-04","requester":{"reference":"Practitioner/dr-1"}}`},
}

// xQueries are run against every resource of their type. Several values of one parameter are
// ORed; several parameters ANDed.
var xQueries = []struct{ typ, query string }{
	{"Patient", "name=peter"},
	{"Patient", "name=PETE"},
	{"Patient", "name=muller"},
	{"Patient", "name=eter"},
	{"Patient", "name:exact=Peter"},
	{"Patient", "name:exact=peter"},
	{"Patient", "name:contains=alm"},
	{"Patient", "family=chalmers,smith"},
	{"Patient", "address-city=zurich"},
	{"Patient", "gender=male"},
	{"Patient", "gender=http://hl7.org/fhir/administrative-gender|female"},
	{"Patient", "gender:not=male"},
	{"Patient", "gender:missing=true"},
	{"Patient", "gender:missing=false"},
	{"Patient", "birthdate=1974"},
	{"Patient", "birthdate=ge1980-01-01"},
	{"Patient", "birthdate=lt1980-03-15"},
	{"Patient", "birthdate=1980-03-15"},
	{"Patient", "birthdate=sa1975"},
	{"Patient", "birthdate=ne1974-12-25"},
	{"Patient", "birthdate=ap1980-03"},
	{"Patient", "birthdate=le1980-03"},
	{"Patient", "identifier=111"},
	{"Patient", "identifier=http://ids|222"},
	{"Patient", "identifier=|333"},
	{"Patient", "identifier=http://ids|"},
	{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|111"},
	{"Patient", "identifier:text=medical"},
	{"Patient", "identifier:of-type=http://wrong|MR|111"},
	{"Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|222"},
	{"Patient", "organization=Organization/org-1"},
	{"Patient", "organization=org-2"},
	{"Patient", "organization=https://fhir.example.org/fhir/Organization/org-2"},
	{"Patient", "organization:Organization=org-1"},
	{"Patient", "organization:missing=true"},
	{"Patient", "general-practitioner=https://other.example.org/fhir/Practitioner/dr-1"},
	{"Patient", "general-practitioner=Practitioner/dr-1"},
	{"Patient", "telecom=555-1234"},
	{"Patient", "email=peter@example.org"},
	{"Patient", "link=Patient/pat-1"},
	{"Patient", "_id=pat-1,pat-3"},
	{"Patient", "active=true"},
	{"Patient", "deceased=false"},
	{"Patient", "name=pe&gender=female"},
	{"Observation", "category=laboratory"},
	{"Observation", "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"},
	{"Observation", "category=|laboratory"},
	{"Observation", "category:not=laboratory"},
	{"Observation", "category:not=http://terminology.hl7.org/CodeSystem/observation-category|laboratory,vital-signs"},
	{"Observation", "code=http://loinc.org|8480-6"},
	{"Observation", "code=8480-6"},
	{"Observation", "code:text=systolic"},
	{"Observation", "code:text=free text"},
	{"Observation", "code:text=blood"},
	{"Observation", "code:text=ressure"},
	{"Observation", "subject=Patient/pat-1"},
	{"Observation", "subject=Patient/pat-2"},
	{"Observation", "subject=pat-1"},
	{"Observation", "patient=pat-2"},
	{"Observation", "subject:Group=g-1"},
	{"Observation", "subject:identifier=urn:mrn|M1"},
	{"Observation", "subject:identifier=M1"},
	{"Observation", "subject:missing=true"},
	{"Observation", "focus=https://other.example.org/fhir/Patient/pat-1"},
	{"Observation", "focus=Patient/pat-1"},
	{"Observation", "performer=Practitioner/dr-1,Patient/pat-2"},
	{"Observation", "date=2020-01-15"},
	{"Observation", "date=ge2020-01-16"},
	{"Observation", "date=lt2020"},
	{"Observation", "date=eb2020-01-01"},
	{"Observation", "date=ap2020-01-15"},
	{"Observation", "date=gt2022"},
	{"Observation", "date=2020"},
	{"Observation", "date=ne2020-01-15T10:00:00Z"},
	{"Observation", "date=2023-05-05T05:05:05.123Z"},
	{"Observation", "date=gt2020-01-15T10:00:00Z"},
	{"Observation", "date=ge2020-01-15T10:00:00Z"},
	{"Observation", "date=le2020-01-15T10:00:00Z"},
	{"Observation", "date=lt2020-01-15T10:00:00Z"},
	{"Observation", "date=sa2020-01-15T09:59:59Z"},
	{"Observation", "date=eb2020-01-15T10:00:01Z"},
	{"Observation", "date=sa2020-01-20"},
	{"Observation", "date=ge2020-01-20"},
	{"Observation", "date=le2019-12-31"},
	{"Observation", "date=sa2020-01-15T10:00:00.000000Z"},
	{"Observation", "subject:identifier=urn:other|M1"},
	{"Observation", "subject=Group/pat-1"},
	{"Observation", "subject=https://third.example.org/fhir/Patient/pat-1"},
	{"Observation", "focus=https://third.example.org/fhir/Patient/pat-1"},
	{"Observation", "value-quantity=120"},
	{"Observation", "value-quantity=gt100|http://unitsofmeasure.org|mm[Hg]"},
	{"Observation", "value-quantity=70.5||kg"},
	{"Observation", "value-quantity=le70.5"},
	{"Observation", "value-quantity=ne120"},
	{"Observation", "value-quantity=5.5|http://unitsofmeasure.org|"},
	{"Observation", "value-quantity=ap1.3e2"},
	{"Observation", "code-value-quantity=http://loinc.org|8480-6$gt125"},
	{"Observation", "code-value-quantity=8480-6$120"},
	{"Observation", "component-code-value-quantity=8462-4$80|http://unitsofmeasure.org|mm[Hg]"},
	{"Observation", "combo-code-value-quantity=8462-4$lt100"},
	{"Observation", "value-concept:text=positive"},
	{"Observation", "value-string=ab"},
	{"Observation", "value-string:exact=abc def"},
	{"Observation", "_tag=http://example.org/tags|t1"},
	{"Observation", "_profile=http://example.org/StructureDefinition/bp"},
	{"Observation", "_profile:below=http://example.org/"},
	{"Observation", "status=final,amended"},
	{"Observation", "status:missing=false"},
	{"Observation", "identifier=http://obs|O-1"},
	{"Observation", "category=laboratory&code=8480-6&date=ge2020"},
	{"Observation", "_lastUpdated=gt2026-03-01T20:00:00Z"},
	{"Observation", "_lastUpdated=le2026-03-01T21:00Z"},
	{"Observation", "_lastUpdated=2026-03-01"},
	{"Condition", "clinical-status=active"},
	{"Condition", "code=http://snomed.info/sct|44054006"},
	{"Condition", "code:text=headache"},
	{"Condition", "onset-date=2010"},
	{"Condition", "onset-date=ge2021-02-02"},
	{"Condition", "recorded-date=le2010-05-01"},
	{"Condition", "patient=pat-2"},
	{"Condition", "asserter=Patient/pat-3"},
	{"Condition", "category:missing=true"},
	{"RiskAssessment", "probability=0.25"},
	{"RiskAssessment", "probability=gt0.5"},
	{"RiskAssessment", "probability=1e2"},
	{"RiskAssessment", "probability=ap100"},
	{"RiskAssessment", "probability=ne0.25"},
	{"RiskAssessment", "probability=lt1"},
	{"RiskAssessment", "probability=0.5"},
	{"RiskAssessment", "probability=0.3"},
	{"RiskAssessment", "probability=ge0.25"},
	{"RiskAssessment", "probability=le0.25"},
	{"RiskAssessment", "probability=gt0.25"},
	{"RiskAssessment", "probability=sa0.4"},
	{"RiskAssessment", "probability=eb0.6"},
	{"ValueSet", "url=http://acme.org/fhir/ValueSet/a"},
	{"ValueSet", "url:below=http://acme.org/fhir/"},
	{"ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/b/c"},
	{"ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/bx"},
	{"ValueSet", "name=other"},
	{"ValueSet", "status=active&version=1"},
	{"Encounter", "date=2020-01-15"},
	{"Encounter", "date=ge2020-01-15T10:30:00Z"},
	{"Encounter", "date=gt2025"},
	{"Encounter", "class=AMB"},
	{"Encounter", "length=gt100|http://unitsofmeasure.org|min"},
	{"Encounter", "patient=Patient/pat-1"},
	{"Device", "patient=pat-1"},
	{"Device", "type:text=insulin"},
	{"MedicationRequest", "code=http://www.nlm.nih.gov/research/umls/rxnorm|860975"},
	{"MedicationRequest", "authoredon=2021-03"},
	{"MedicationRequest", "intent=order&requester=Practitioner/dr-1"},
	{"Organization", "name=acme"},
	{"Organization", "address-city=bern"},
	{"Organization", "identifier=http://orgs|A1"},
	{"Practitioner", "name=smith"},
}

// xStored is the store loaded with xResources and the stored bodies by type (as the store
// returns them: stamped with id and meta).
type xStored struct {
	store  *sqlstore.Store
	reg    *search.Registry
	bodies map[string]map[string][]byte // type -> id -> body
}

func loadCrossCheck(t *testing.T) *xStored {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	tick := xNow
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		tick = tick.Add(time.Hour + 1234567*time.Microsecond) // a different millisecond each write
		return tick
	}
	ctx := context.Background()
	s, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db"), Registry: reg, Now: clock})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	x := &xStored{store: s, reg: reg, bodies: map[string]map[string][]byte{}}
	for _, r := range xResources {
		res, _, err := s.Update(ctx, r.typ, r.id, []byte(r.body), backend.UpdateOptions{})
		if err != nil {
			t.Fatalf("Update %s/%s: %v", r.typ, r.id, err)
		}
		if x.bodies[r.typ] == nil {
			x.bodies[r.typ] = map[string][]byte{}
		}
		x.bodies[r.typ][r.id] = res.Body
	}
	return x
}

func (x *xStored) search(t *testing.T, q *search.Query) []string {
	t.Helper()
	q.Count = 1000
	res, err := x.store.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("store Search: %v", err)
	}
	var ids []string
	for _, r := range res.Matches {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestMatcherCrossCheckStore(t *testing.T) {
	x := loadCrossCheck(t)
	m, err := search.NewMatcher(x.reg)
	if err != nil {
		t.Fatal(err)
	}
	queries := slices.Clone(xQueries)
	// _lastUpdated at the boundaries of one stored instant (the column holds milliseconds).
	var meta struct {
		Meta struct {
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(x.bodies["Observation"]["obs-3"], &meta); err != nil || !strings.HasSuffix(meta.Meta.LastUpdated, "Z") {
		t.Fatalf("obs-3 meta: %v %q", err, meta.Meta.LastUpdated)
	}
	at := meta.Meta.LastUpdated
	finer := strings.TrimSuffix(at, "Z") + "5Z" // within the millisecond, after its start
	for _, p := range []string{"", "gt", "ge", "lt", "le", "ne", "sa", "eb"} {
		queries = append(queries,
			struct{ typ, query string }{"Observation", "_lastUpdated=" + p + at},
			struct{ typ, query string }{"Observation", "_lastUpdated=" + p + finer})
	}
	discriminating := 0
	for _, tc := range queries {
		t.Run(tc.typ+"?"+tc.query, func(t *testing.T) {
			params, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			q, warnings, err := search.Parse(x.reg, []string{tc.typ}, params, search.ParseOptions{BaseURL: xBase, Now: func() time.Time { return xNow }, Strict: true})
			if err != nil || len(warnings) > 0 {
				t.Fatalf("Parse: %v %v", err, warnings)
			}
			want := x.search(t, q)
			var got []string
			for id, body := range x.bodies[tc.typ] {
				ok, err := m.Matches(tc.typ, body, q.Clauses)
				if err != nil {
					t.Fatalf("Matches %s/%s: %v", tc.typ, id, err)
				}
				if ok {
					got = append(got, id)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("Matcher finds %v, the store finds %v", got, want)
			}
			if len(want) > 0 && len(want) < len(x.bodies[tc.typ]) {
				discriminating++
			}
		})
	}
	// The queries must tell resources apart, or agreeing on them proves little.
	if discriminating < len(queries)*3/4 {
		t.Errorf("only %d of %d queries match some but not all resources of their type", discriminating, len(queries))
	}
}

func TestMembershipCrossCheckStore(t *testing.T) {
	x := loadCrossCheck(t)
	mc, err := compartment.NewMembership(x.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	types := make([]string, 0, len(x.bodies))
	for typ := range x.bodies {
		types = append(types, typ)
	}
	slices.Sort(types)
	members := 0
	for _, pid := range []string{"pat-1", "pat-2", "pat-3", "pat-9", "org-1"} {
		comp := search.CompartmentRef{Type: "Patient", ID: pid}
		for _, typ := range types {
			t.Run(fmt.Sprintf("Patient/%s/%s", pid, typ), func(t *testing.T) {
				want := x.search(t, &search.Query{Types: []string{typ}, Compartment: &comp})
				var got []string
				for id, body := range x.bodies[typ] {
					ok, err := mc.InCompartment(comp, typ, body)
					if err != nil {
						t.Fatalf("InCompartment %s/%s: %v", typ, id, err)
					}
					if ok {
						got = append(got, id)
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("MembershipChecker finds %v, the store finds %v", got, want)
				}
				members += len(want)
			})
		}
	}
	if members < 15 {
		t.Errorf("only %d compartment memberships in the fixture", members)
	}
}
