package policy

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// The scenarios under testdata/policy are the policy's specification by example: token claims +
// request → expected decision, reasons, narrowing and response filtering (STYLE.md §7).

type scenarioFile struct {
	// Engine configures the engine of the file's scenarios; nil means newTestEngine.
	Engine    *engineSpec `yaml:"engine"`
	Scenarios []scenario  `yaml:"scenarios"`
}

// engineSpec is an engine configuration for a scenario file.
type engineSpec struct {
	// UserAccess is all, compartment or care-team.
	UserAccess string `yaml:"userAccess"`
	// CareTeams maps a practitioner reference to the patient ids of its care teams.
	CareTeams map[string][]string `yaml:"careTeams"`
	// MaxUserPatients caps the care-team set.
	MaxUserPatients int `yaml:"maxUserPatients"`
	// HideExistence false answers refusals 403.
	HideExistence *bool `yaml:"hideExistence"`
	// Real uses the search.Matcher and compartment.MembershipChecker the app uses instead of
	// the test doubles.
	Real bool `yaml:"real"`
}

// mapCareTeams is a CareTeamSource over a map.
type mapCareTeams map[string][]string

func (m mapCareTeams) CareTeamPatients(_ context.Context, ref string, limit int) ([]string, error) {
	ids := m[ref]
	if len(ids) > limit+1 {
		ids = ids[:limit+1]
	}
	return ids, nil
}

func (spec *engineSpec) build(t *testing.T) *Engine {
	t.Helper()
	cfg := Config{
		Registry:   testRegistry(t),
		Matcher:    &fieldMatcher{},
		Membership: refMembership{},
		BaseURL:    "https://fhirgate.example/fhir",
		Now:        func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) },
	}
	if spec.Real {
		cfg.Matcher, cfg.Membership = realMatcher(t), realMembership(t)
	}
	ua, err := NewUserAccess(spec.UserAccess, mapCareTeams(spec.CareTeams))
	if err != nil {
		t.Fatal(err)
	}
	cfg.UserAccess = ua
	cfg.MaxUserPatients = spec.MaxUserPatients
	if spec.HideExistence != nil {
		cfg.DenyAsForbidden = !*spec.HideExistence
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type scenario struct {
	Name string `yaml:"name"`
	// Lesson names the SECURITY-LESSONS class the scenario guards, if any.
	Lesson int `yaml:"lesson"`
	// Token is nil for a request without a token.
	Token *struct {
		Scope    string   `yaml:"scope"`
		Patient  string   `yaml:"patient"`
		FHIRUser string   `yaml:"fhirUser"`
		Roles    []string `yaml:"roles"`
	} `yaml:"token"`
	Request struct {
		Interaction string   `yaml:"interaction"`
		Type        string   `yaml:"type"`
		ID          string   `yaml:"id"`
		Operation   string   `yaml:"operation"`
		Types       []string `yaml:"types"`       // search types; default [type]
		Query       string   `yaml:"query"`       // search parameters; a search has a Query even when empty
		Compartment string   `yaml:"compartment"` // Patient/p1 for search-compartment
		Resource    string   `yaml:"resource"`    // fixture name
		Current     string   `yaml:"current"`     // fixture name
	} `yaml:"request"`
	Expect struct {
		Allow    bool     `yaml:"allow"`
		Reasons  []string `yaml:"reasons"`
		NotFound bool     `yaml:"notFound"`
		Status   int      `yaml:"status"`
		// Rule is the expected Decision.Rule, when set.
		Rule string `yaml:"rule"`
		// Narrowing, for allowed searches: the compartment and the clauses ("code=a,b") the
		// narrowed query gains; Types for searches over every type (a few that must and must
		// not be there).
		Compartment string   `yaml:"compartment"`
		Clauses     []string `yaml:"clauses"`
		TypesHave   []string `yaml:"typesHave"`
		TypesLack   []string `yaml:"typesLack"`
	} `yaml:"expect"`
	// Filter checks resources against the decision's ResponseFilter.
	Filter []struct {
		Resource string `yaml:"resource"`
		Allow    bool   `yaml:"allow"`
		Reason   string `yaml:"reason"`
	} `yaml:"filter"`
}

func loadResources(t *testing.T) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy", "resources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Resources map[string]string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for k, v := range f.Resources {
		out[k] = []byte(v)
	}
	return out
}

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := New(Config{
		Registry:   testRegistry(t),
		Matcher:    &fieldMatcher{},
		Membership: refMembership{},
		BaseURL:    "https://fhirgate.example/fhir",
		Now:        func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "policy", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	resources := loadResources(t)
	e := newTestEngine(t)
	reg := testRegistry(t)
	total := 0
	for _, file := range files {
		if filepath.Base(file) == "resources.yaml" {
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var sf scenarioFile
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		dec.KnownFields(true)
		if err := dec.Decode(&sf); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		fe := e
		if sf.Engine != nil {
			fe = sf.Engine.build(t)
		}
		for _, sc := range sf.Scenarios {
			total++
			t.Run(filepath.Base(file)+"/"+sc.Name, func(t *testing.T) {
				runScenario(t, fe, reg, resources, sc)
			})
		}
	}
	if total < 50 {
		t.Errorf("only %d scenarios found", total)
	}
}

func body(t *testing.T, resources map[string][]byte, name string) []byte {
	t.Helper()
	if name == "" {
		return nil
	}
	b, ok := resources[name]
	if !ok {
		t.Fatalf("no resource fixture %q", name)
	}
	return b
}

func runScenario(t *testing.T, e *Engine, reg *search.Registry, resources map[string][]byte, sc scenario) {
	in := Input{
		Interaction: Interaction(sc.Request.Interaction),
		Type:        sc.Request.Type,
		ID:          sc.Request.ID,
		Operation:   sc.Request.Operation,
		Resource:    body(t, resources, sc.Request.Resource),
		Current:     body(t, resources, sc.Request.Current),
	}
	if sc.Token != nil {
		scopes, _ := smart.ParseScopes(sc.Token.Scope)
		in.Principal = &authn.Principal{
			Subject: "s", ClientID: "c", JTI: "j", Scopes: scopes,
			Patient: sc.Token.Patient, FHIRUser: sc.Token.FHIRUser, Roles: sc.Token.Roles,
		}
	}
	switch in.Interaction {
	case SearchType, SearchSystem, SearchCompartment:
		types := sc.Request.Types
		if types == nil && sc.Request.Type != "" {
			types = []string{sc.Request.Type}
		}
		params, err := url.ParseQuery(sc.Request.Query)
		if err != nil {
			t.Fatal(err)
		}
		q := &search.Query{Types: types}
		if len(types) > 0 {
			q, _, err = search.Parse(reg, types, params, search.ParseOptions{Strict: true})
			if err != nil {
				t.Fatalf("search.Parse(%q): %v", sc.Request.Query, err)
			}
			if in.Interaction == SearchSystem && sc.Request.Types == nil {
				q.Types = nil
			}
		}
		if sc.Request.Compartment != "" {
			typ, id, _ := strings.Cut(sc.Request.Compartment, "/")
			q.Compartment = &search.CompartmentRef{Type: typ, ID: id}
		}
		in.Query = q
	}

	d, err := e.Evaluate(context.Background(), in)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	reasons := make([]string, len(d.Reasons))
	for i, r := range d.Reasons {
		reasons[i] = string(r)
	}
	if d.Allow != sc.Expect.Allow {
		t.Errorf("Allow = %v (reasons %v, %s), want %v", d.Allow, reasons, d.Detail, sc.Expect.Allow)
	}
	if sc.Expect.Reasons != nil && !slices.Equal(reasons, sc.Expect.Reasons) {
		t.Errorf("Reasons = %v (%s), want %v", reasons, d.Detail, sc.Expect.Reasons)
	}
	if sc.Expect.Rule != "" && d.Rule != sc.Expect.Rule {
		t.Errorf("Rule = %q, want %q", d.Rule, sc.Expect.Rule)
	}
	if d.Rule == "" && in.Interaction != Capabilities {
		t.Errorf("decision without a rule (reasons %v)", reasons)
	}
	if d.NotFound != sc.Expect.NotFound {
		t.Errorf("NotFound = %v, want %v", d.NotFound, sc.Expect.NotFound)
	}
	if sc.Expect.Status != 0 && d.Status() != sc.Expect.Status {
		t.Errorf("Status() = %d, want %d", d.Status(), sc.Expect.Status)
	}
	if d.Allow && d.Filter == nil && in.Interaction != Capabilities {
		t.Errorf("allowed decision without a filter")
	}
	if !d.Allow && (d.Narrowing != nil || d.Filter != nil) {
		t.Errorf("denied decision carries a narrowing or filter")
	}

	if d.Allow && in.Query != nil {
		q := *in.Query
		before := len(q.Clauses)
		if err := d.Narrowing.Narrow(&q); err != nil {
			t.Fatalf("Narrow: %v", err)
		}
		comp := ""
		if q.Compartment != nil {
			comp = q.Compartment.Type + "/" + q.Compartment.ID
		}
		wantComp := sc.Expect.Compartment
		if wantComp == "" {
			wantComp = sc.Request.Compartment
		}
		if comp != wantComp {
			t.Errorf("narrowed compartment = %q, want %q", comp, wantComp)
		}
		var added []string
		for _, c := range q.Clauses[before:] {
			added = append(added, renderClause(c))
		}
		if !slices.Equal(added, sc.Expect.Clauses) {
			t.Errorf("narrowing clauses = %q, want %q", added, sc.Expect.Clauses)
		}
		for _, typ := range sc.Expect.TypesHave {
			if !slices.Contains(q.Types, typ) {
				t.Errorf("narrowed types lack %s", typ)
			}
		}
		for _, typ := range sc.Expect.TypesLack {
			if slices.Contains(q.Types, typ) {
				t.Errorf("narrowed types hold %s", typ)
			}
		}
	} else if d.Allow && d.Narrowing != nil && sc.Expect.Compartment != "" {
		c := d.Narrowing.Compartment
		if c == nil || c.Type+"/"+c.ID != sc.Expect.Compartment {
			t.Errorf("narrowing compartment = %v, want %s", c, sc.Expect.Compartment)
		}
	}

	for _, fc := range sc.Filter {
		b := body(t, resources, fc.Resource)
		typ := fc.Resource
		if h, _, ok := strings.Cut(string(b), `","id"`); ok {
			typ = strings.TrimPrefix(h, `{"resourceType":"`)
		}
		ok, why := d.Filter.Check(typ, b)
		if ok != fc.Allow || string(why) != fc.Reason {
			t.Errorf("Filter.Check(%s) = %v, %q; want %v, %q", fc.Resource, ok, why, fc.Allow, fc.Reason)
		}
	}
}

func renderClause(c search.Clause) string {
	var raws []string
	for _, v := range c.Values {
		raws = append(raws, v.Raw)
	}
	name := "?"
	if c.Param != nil {
		name = c.Param.Code
	}
	if c.Modifier != "" {
		name += ":" + c.Modifier
	}
	return name + "=" + strings.Join(raws, ",")
}
