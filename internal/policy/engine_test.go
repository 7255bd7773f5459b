package policy

import (
	"context"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

func principal(scope, patient, fhirUser string) *authn.Principal {
	ss, _ := smart.ParseScopes(scope)
	return &authn.Principal{Subject: "s", ClientID: "c", JTI: "j", Scopes: ss, Patient: patient, FHIRUser: fhirUser}
}

const obsP1 = `{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]}`
const obsP2 = `{"resourceType":"Observation","id":"o9","subject":{"reference":"Patient/p2"}}`

func TestNewConfig(t *testing.T) {
	reg := testRegistry(t)
	bad := []Config{
		{Matcher: &fieldMatcher{}, Membership: refMembership{}},
		{Registry: reg, Membership: refMembership{}},
		{Registry: reg, Matcher: &fieldMatcher{}},
		{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}, SharedTypes: []string{"Nope"}},
		{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}, SharedTypes: []string{"Observation"}},
		{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}, ExtraCompartmentTypes: []string{"Observation"}},
		{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}, ExtraCompartmentTypes: []string{"Practitioner"}},
		{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}, ExtraCompartmentTypes: []string{"Nope"}},
	}
	for i, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	e, err := New(Config{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}, SharedTypes: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	// No shared types: patient scopes reach only the compartment.
	d, _ := e.Evaluate(context.Background(), Input{Principal: principal("patient/*.rs", "p1", ""), Interaction: Read, Type: "Practitioner", ID: "d1"})
	if d.Allow || d.Reasons[0] != ReasonTypeOutsidePatientContext {
		t.Errorf("Practitioner without shared types: %+v", d)
	}
	if !e.InPatientCompartment("Observation") || e.InPatientCompartment("Practitioner") || !e.InPatientCompartment("Patient") || !e.InPatientCompartment("Device") {
		t.Error("InPatientCompartment is wrong")
	}
}

// TestEvaluateFailsClosedOnCheckErrors: a Matcher or Membership that cannot answer refuses the
// request and the resource.
func TestEvaluateFailsClosedOnCheckErrors(t *testing.T) {
	reg := testRegistry(t)
	boom := errors.New("index unavailable")
	e, err := New(Config{Registry: reg, Matcher: &fieldMatcher{err: boom}, Membership: refMembership{err: boom}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []Input{
		{Principal: principal("patient/*.rs", "p1", ""), Interaction: Read, Type: "Observation", ID: "o1", Resource: []byte(obsP1)},
		{Principal: principal("patient/*.cruds", "p1", ""), Interaction: Create, Type: "Observation", Resource: []byte(obsP1)},
		{Principal: principal("patient/*.cruds", "p1", ""), Interaction: Delete, Type: "Observation", ID: "o1", Current: []byte(obsP1)},
		{Principal: principal("user/Observation.rs?category=laboratory", "", "Practitioner/d1"), Interaction: Read, Type: "Observation", ID: "o1", Resource: []byte(obsP1)},
	}
	for i, in := range tests {
		d, err := e.Evaluate(ctx, in)
		if err == nil || d.Allow || d.Reasons[0] != ReasonEvaluationError {
			t.Errorf("input %d: %+v, %v; want a denial with an error", i, d, err)
		}
	}
	d, err := e.Evaluate(ctx, Input{Principal: principal("patient/*.rs", "p1", ""), Interaction: Read, Type: "Observation", ID: "o1"})
	if err != nil || !d.Allow {
		t.Fatalf("read without body: %+v %v", d, err)
	}
	if ok, why := d.Filter.Check("Observation", []byte(obsP1)); ok || why != ReasonEvaluationError {
		t.Errorf("Filter.Check with failing membership = %v %q", ok, why)
	}
}

func TestFilterEdges(t *testing.T) {
	var nilFilter *ResponseFilter
	if ok, _ := nilFilter.Check("Observation", []byte(obsP1)); ok {
		t.Error("nil filter passed a resource")
	}
	if nilFilter.Permits("Observation") {
		t.Error("nil filter permits a type")
	}
	e := newTestEngine(t)
	d, _ := e.Evaluate(context.Background(), Input{Principal: principal("patient/Observation.rs user/Practitioner.rs", "p1", "Patient/p1"), Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
	if !d.Allow {
		t.Fatalf("%+v", d)
	}
	f := d.Filter
	cases := []struct {
		typ  string
		body string
		ok   bool
		why  Reason
	}{
		{"Observation", obsP1, true, ""},
		{"Observation", obsP2, false, ReasonOutsideCompartment},
		{"Condition", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`, false, ReasonScopeMissingType},
		{"Observation", `{"resourceType":"Condition","subject":{"reference":"Patient/p1"}}`, false, ReasonInvalidInput}, // mislabeled
		{"Observation", ``, false, ReasonInvalidInput},                                                                  // a deleted version of a bounded type
		{"NotAType", obsP1, false, ReasonInvalidInput},                                                                  //
		{"Practitioner", `{"resourceType":"Practitioner"}`, true, ""},                                                   // shared type via user/ scope
		{"Practitioner", ``, true, ""},                                                                                  // a deleted version of an unbounded type
	}
	for _, c := range cases {
		ok, why := f.Check(c.typ, []byte(c.body))
		if ok != c.ok || why != c.why {
			t.Errorf("Check(%s, %.40s) = %v %q, want %v %q", c.typ, c.body, ok, why, c.ok, c.why)
		}
	}
	if !f.Permits("Observation") || !f.Permits("Practitioner") || f.Permits("Condition") || f.Permits("Nope") {
		t.Error("Permits is wrong")
	}
}

// TestNarrowEveryPage is SECURITY-LESSONS #3: a continuation of a search is narrowed again, and
// a page request that names another patient's compartment cannot be narrowed.
func TestNarrowEveryPage(t *testing.T) {
	e := newTestEngine(t)
	p := principal("patient/Observation.rs?category=laboratory", "p1", "")
	page := func(comp *search.CompartmentRef) (Decision, *search.Query) {
		q := &search.Query{Types: []string{"Observation"}, Cursor: "opaque-next-page", Compartment: comp}
		d, err := e.Evaluate(context.Background(), Input{Principal: p, Interaction: SearchType, Type: "Observation", Query: q})
		if err != nil {
			t.Fatal(err)
		}
		return d, q
	}
	d, q := page(nil)
	if err := d.Narrowing.Narrow(q); err != nil {
		t.Fatal(err)
	}
	if q.Compartment == nil || q.Compartment.ID != "p1" || len(q.Clauses) != 1 || q.Clauses[0].Param.Code != "category" {
		t.Errorf("continuation not narrowed: %+v", q)
	}
	d, _ = page(&search.CompartmentRef{Type: "Patient", ID: "p2"})
	if d.Allow {
		t.Error("continuation naming another patient's compartment allowed")
	}
	// Narrow itself refuses to overwrite a different compartment.
	d, _ = page(nil)
	q2 := &search.Query{Types: []string{"Observation"}, Compartment: &search.CompartmentRef{Type: "Patient", ID: "p2"}}
	if err := d.Narrowing.Narrow(q2); !errors.Is(err, ErrNarrowing) {
		t.Errorf("Narrow over a foreign compartment: %v", err)
	}
	if err := d.Narrowing.Narrow(nil); !errors.Is(err, ErrNarrowing) {
		t.Errorf("Narrow(nil): %v", err)
	}
	q3 := &search.Query{Types: []string{"Observation", "Condition"}}
	if err := d.Narrowing.Narrow(q3); !errors.Is(err, ErrNarrowing) {
		t.Errorf("Narrow of several types with granular clauses: %v", err)
	}
	q4 := &search.Query{}
	if err := d.Narrowing.Narrow(q4); !errors.Is(err, ErrNarrowing) {
		t.Errorf("Narrow of every type under a compartment: %v", err)
	}
	var none *Narrowing
	if err := none.Narrow(&search.Query{}); err != nil {
		t.Errorf("nil Narrowing: %v", err)
	}
}

func TestNarrowingFor(t *testing.T) {
	e := newTestEngine(t)
	p := principal("user/*.rs user/Observation.rs?category=laboratory user/Condition.rs?category=a user/Condition.rs?code=b", "", "Practitioner/d1")
	d, err := e.Evaluate(context.Background(), Input{Principal: p, Interaction: Operation, Operation: "$everything", Type: "Patient", ID: "p2"})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	n := d.Narrowing
	if cl, ok := n.For("Observation"); !ok || len(cl) != 0 {
		t.Errorf("For(Observation) = %v %v; user/*.rs makes it unconstrained", cl, ok)
	}
	p = principal("user/Observation.rs?category=laboratory user/Condition.rs?category=a user/Condition.rs?code=b user/Patient.r", "", "Practitioner/d1")
	d, err = e.Evaluate(context.Background(), Input{Principal: p, Interaction: Operation, Operation: "$everything", Type: "Patient", ID: "p2"})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	n = d.Narrowing
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if cl, ok := n.For("Observation"); !ok || len(cl) != 1 {
				t.Errorf("For(Observation) = %v %v", cl, ok)
			}
			if _, ok := n.For("Condition"); ok {
				t.Error("For(Condition) with inexpressible alternatives is ok")
			}
			if _, ok := n.For("Encounter"); ok {
				t.Error("For(Encounter) without a scope is ok")
			}
			if !d.Filter.Permits("Observation") || d.Filter.Permits("Encounter") {
				t.Error("Filter.Permits is wrong")
			}
		})
	}
	wg.Wait()
}

func TestMergeAlternatives(t *testing.T) {
	a := &search.Param{Code: "category"}
	b := &search.Param{Code: "code"}
	cl := func(p *search.Param, mod string, vals ...string) search.Clause {
		c := search.Clause{Param: p, Modifier: mod}
		for _, v := range vals {
			c.Values = append(c.Values, search.Value{Raw: v})
		}
		return c
	}
	tests := []struct {
		name string
		alts [][]search.Clause
		want string
		ok   bool
	}{
		{"none", nil, "", false},
		{"one", [][]search.Clause{{cl(a, "", "x"), cl(b, "", "y")}}, "category=x code=y", true},
		{"same param", [][]search.Clause{{cl(a, "", "x")}, {cl(a, "", "y", "z")}}, "category=x,y,z", true},
		{"different params", [][]search.Clause{{cl(a, "", "x")}, {cl(b, "", "y")}}, "", false},
		{"different modifiers", [][]search.Clause{{cl(a, "", "x")}, {cl(a, "not", "y")}}, "", false},
		{"multi-clause alternative", [][]search.Clause{{cl(a, "", "x")}, {cl(a, "", "y"), cl(b, "", "z")}}, "", false},
	}
	for _, tc := range tests {
		got, ok := mergeAlternatives(tc.alts)
		var parts []string
		for _, c := range got {
			parts = append(parts, renderClause(c))
		}
		if ok != tc.ok || strings.Join(parts, " ") != tc.want {
			t.Errorf("%s: mergeAlternatives = %q %v, want %q %v", tc.name, parts, ok, tc.want, tc.ok)
		}
	}
}

func TestDecisionStatus(t *testing.T) {
	tests := []struct {
		d    Decision
		want int
	}{
		{Decision{Allow: true}, 200},
		{deny(ReasonNoToken, ""), 401},
		{(&Engine{}).hidden(ReasonOutsideCompartment, ""), 404},
		{(&Engine{revealDeny: true}).hidden(ReasonOutsideCompartment, ""), 403},
		{deny(ReasonScopeMissingType, ""), 403},
		{Decision{}, 403}, // the zero decision denies
	}
	for _, tc := range tests {
		if got := tc.d.Status(); got != tc.want {
			t.Errorf("%+v.Status() = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestPermsFor(t *testing.T) {
	want := map[Interaction]string{
		Read: "r", VRead: "r", HistoryInstance: "r",
		SearchType: "s", SearchSystem: "s", SearchCompartment: "s", HistoryType: "s", HistorySystem: "s",
		Create: "c", Update: "u", Patch: "u", Delete: "d", Operation: "", Capabilities: "",
	}
	for i, w := range want {
		if got := PermsFor(i).String(); got != w {
			t.Errorf("PermsFor(%s) = %q, want %q", i, got, w)
		}
	}
}

func TestEvaluateConcurrent(t *testing.T) {
	e := newTestEngine(t)
	p := principal("patient/*.rs patient/Observation.rs?category=laboratory", "p1", "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				q := &search.Query{Types: []string{"Observation"}}
				d, err := e.Evaluate(context.Background(), Input{Principal: p, Interaction: SearchType, Type: "Observation", Query: q})
				if err != nil || !d.Allow {
					t.Errorf("%d/%d: %+v %v", i, j, d, err)
					return
				}
				if ok, _ := d.Filter.Check("Observation", []byte(obsP2)); ok {
					t.Error("other patient's observation passed")
				}
			}
		})
	}
	wg.Wait()
}

// TestImports keeps policy and smart free of HTTP handlers and database drivers (DESIGN.md).
func TestImports(t *testing.T) {
	forbidden := []string{"net/http", "database/sql", "github.com/jackc/pgx", "modernc.org/sqlite", "github.com/redis"}
	for _, dir := range []string{".", filepath.Join("..", "smart")} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if strings.HasPrefix(path, bad) {
						t.Errorf("%s imports %s", f, path)
					}
				}
			}
		}
	}
}

func BenchmarkEvaluateRead(b *testing.B) {
	e := newTestEngine(b)
	p := principal("launch/patient patient/*.rs", "p1", "")
	in := Input{Principal: p, Interaction: Read, Type: "Observation", ID: "o1"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, _ := e.Evaluate(ctx, in)
		if !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
}

func BenchmarkEvaluateGranularSearch(b *testing.B) {
	e := newTestEngine(b)
	p := principal("patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis patient/Patient.rs", "p1", "")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		q := &search.Query{Types: []string{"Condition"}}
		d, _ := e.Evaluate(ctx, Input{Principal: p, Interaction: SearchType, Type: "Condition", Query: q})
		if !d.Allow {
			b.Fatal(d.Reasons)
		}
		if err := d.Narrowing.Narrow(q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvaluateSystemSearchEveryType(b *testing.B) {
	e := newTestEngine(b)
	p := principal("patient/*.rs", "p1", "")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		q := &search.Query{}
		d, _ := e.Evaluate(ctx, Input{Principal: p, Interaction: SearchSystem, Query: q})
		if !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
}

func BenchmarkFilterCheck(b *testing.B) {
	e := newTestEngine(b)
	p := principal("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", "p1", "")
	d, _ := e.Evaluate(context.Background(), Input{Principal: p, Interaction: Read, Type: "Observation", ID: "o1"})
	body := []byte(obsP1)
	b.ReportAllocs()
	for b.Loop() {
		if ok, why := d.Filter.Check("Observation", body); !ok {
			b.Fatal(why)
		}
	}
}
