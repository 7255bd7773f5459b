package policy

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// fixedAccess is a UserAccess that answers a fixed reach or error and records the limit.
type fixedAccess struct {
	reach Reach
	err   error
	limit atomic.Int64
	calls atomic.Int64
}

func (f *fixedAccess) Name() string { return "fixed" }

func (f *fixedAccess) Reach(_ context.Context, _ string, limit int) (Reach, error) {
	f.calls.Add(1)
	f.limit.Store(int64(limit))
	return f.reach, f.err
}

func userEngine(t *testing.T, ua UserAccess, mutate func(*Config)) *Engine {
	t.Helper()
	cfg := Config{
		Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t),
		BaseURL: "https://fhirgate.example/fhir", UserAccess: ua,
		Now: func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func userPrincipal(scope, fhirUser, patient string) *authn.Principal {
	scopes, _ := smart.ParseScopes(scope)
	return &authn.Principal{Subject: "s", ClientID: "c", JTI: "j", Scopes: scopes, FHIRUser: fhirUser, Patient: patient}
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	return body(t, loadResources(t), name)
}

func searchInput(t *testing.T, p *authn.Principal, typ, query string) Input {
	t.Helper()
	params := map[string][]string{}
	if query != "" {
		k, v, _ := strings.Cut(query, "=")
		params[k] = []string{v}
	}
	q, _, err := search.Parse(testRegistry(t), []string{typ}, params, search.ParseOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	return Input{Principal: p, Interaction: SearchType, Type: typ, Query: q}
}

func narrowed(t *testing.T, d Decision, in Input) []string {
	t.Helper()
	q := *in.Query
	q.Clauses = slices.Clone(q.Clauses)
	before := len(q.Clauses)
	if err := d.Narrowing.Narrow(&q); err != nil {
		t.Fatalf("Narrow: %v", err)
	}
	var out []string
	for _, c := range q.Clauses[before:] {
		out = append(out, renderClause(c))
	}
	return out
}

func TestUserAccessFailsClosed(t *testing.T) {
	ctx := context.Background()
	read := func(p *authn.Principal) Input {
		return Input{Principal: p, Interaction: Read, Type: "Observation", ID: "o1", Resource: fixture(t, "obs-p1-lab")}
	}
	dr := userPrincipal("user/*.rs", "Practitioner/d1", "")
	tests := []struct {
		name    string
		access  UserAccess
		wantErr bool
		reason  Reason
	}{
		{"source error", CareTeam{Source: failingSource{}}, true, ReasonEvaluationError},
		{"no source", CareTeam{}, true, ReasonEvaluationError},
		{"invalid patient id", &fixedAccess{reach: Reach{Kind: ReachPatients, Patients: []string{"p1", "bad id"}}}, true, ReasonEvaluationError},
		{"strategy error", &fixedAccess{err: errors.New("fga down")}, true, ReasonEvaluationError},
		{"unknown reach kind", &fixedAccess{reach: Reach{Kind: ReachKind(42)}}, true, ReasonEvaluationError},
		{"practitioner reach without a reference", &fixedAccess{reach: Reach{Kind: ReachPractitioners}}, true, ReasonEvaluationError},
		{"practitioner reach to a Patient", &fixedAccess{reach: Reach{Kind: ReachPractitioners, Practitioners: []string{"Patient/p1"}}}, true, ReasonEvaluationError},
		{"above the cap", &fixedAccess{reach: Reach{Kind: ReachPatients, Patients: []string{"p1", "p2", "p3"}}}, false, ReasonUserAccessTooBroad},
		{"empty set", &fixedAccess{reach: Reach{Kind: ReachPatients}}, false, ReasonOutsideUserAccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := userEngine(t, tc.access, func(c *Config) { c.MaxUserPatients = 2 })
			d, err := e.Evaluate(ctx, read(dr))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if d.Allow || d.Reasons[0] != tc.reason || d.Narrowing != nil || d.Filter != nil {
				t.Errorf("decision = %+v, want a bare denial %s", d, tc.reason)
			}
			if d.Rule == "" {
				t.Error("denial without a rule")
			}
		})
	}
}

type failingSource struct{}

func (failingSource) CareTeamPatients(context.Context, string, int) ([]string, error) {
	return nil, errors.New("store down")
}

func TestUserAccessNotConsulted(t *testing.T) {
	// The strategy bounds only the user/ scopes of a Practitioner user: patient tokens, patient
	// users, mixed tokens and system tokens never consult it (nor fail with it).
	fa := &fixedAccess{err: errors.New("must not be called")}
	e := userEngine(t, fa, nil)
	for _, p := range []*authn.Principal{
		userPrincipal("patient/*.rs", "", "p1"),
		userPrincipal("user/*.rs", "Patient/p1", ""),
		userPrincipal("patient/*.rs user/Organization.rs", "Practitioner/d1", "p1"),
		userPrincipal("system/*.rs", "", ""),
	} {
		in := Input{Principal: p, Interaction: Read, Type: "Observation", ID: "o1", Resource: fixture(t, "obs-p1-lab")}
		if d, err := e.Evaluate(context.Background(), in); err != nil || !d.Allow {
			t.Errorf("%v: %+v, %v", p.Scopes, d, err)
		}
	}
	if fa.calls.Load() != 0 {
		t.Errorf("strategy consulted %d times", fa.calls.Load())
	}
}

func TestUserAccessLimitPassed(t *testing.T) {
	fa := &fixedAccess{reach: Reach{Kind: ReachPatients, Patients: []string{"p1"}}}
	e := userEngine(t, fa, nil)
	in := Input{Principal: userPrincipal("user/*.rs", "Practitioner/d1", ""), Interaction: Read, Type: "Observation", ID: "o1", Resource: fixture(t, "obs-p1-lab")}
	if d, err := e.Evaluate(context.Background(), in); err != nil || !d.Allow {
		t.Fatalf("%+v, %v", d, err)
	}
	if fa.limit.Load() != DefaultMaxUserPatients {
		t.Errorf("limit = %d, want %d", fa.limit.Load(), DefaultMaxUserPatients)
	}
}

func TestCareTeamMembershipFastPath(t *testing.T) {
	// With a CompartmentLister the set check extracts each body once, whatever the set size, and
	// agrees with the InCompartment loop.
	var calls atomic.Int64
	lister := listingMembership{Membership: realMembership(t), reg: testRegistry(t), calls: &calls}
	patients := []string{"p1"}
	for i := range 500 {
		patients = append(patients, "x"+strconv.Itoa(i))
	}
	src := mapCareTeams{"Practitioner/d1": patients}
	fast := userEngine(t, CareTeam{Source: src}, func(c *Config) { c.Membership = lister })
	slow := userEngine(t, CareTeam{Source: src}, nil)
	p := userPrincipal("user/Observation.rs", "Practitioner/d1", "")
	for _, name := range []string{"obs-p1-lab", "obs-p2-lab", "obs-p2-performer-p1", "obs-p1-performer-r1"} {
		in := Input{Principal: p, Interaction: Read, Type: "Observation", ID: "x", Resource: fixture(t, name)}
		df, err1 := fast.Evaluate(context.Background(), in)
		ds, err2 := slow.Evaluate(context.Background(), in)
		if err1 != nil || err2 != nil || df.Allow != ds.Allow || !slices.Equal(df.Reasons, ds.Reasons) {
			t.Errorf("%s: fast %+v %v, slow %+v %v", name, df, err1, ds, err2)
		}
	}
	if calls.Load() != 4 {
		t.Errorf("lister called %d times, want 4", calls.Load())
	}
}

func TestShadowNeverEnforced(t *testing.T) {
	ctx := context.Background()
	teams := mapCareTeams{"Practitioner/d1": {"p1"}}
	// Enforced: all (today's behaviour). Shadow: care-team, which denies d1 anything of p2.
	plain := userEngine(t, nil, nil)
	withShadow := userEngine(t, nil, func(c *Config) {
		c.Shadow = &Config{UserAccess: CareTeam{Source: teams}}
	})
	d1 := userPrincipal("user/*.cruds", "Practitioner/d1", "")
	inputs := map[string]Input{
		"read p2":      {Principal: d1, Interaction: Read, Type: "Observation", ID: "o9", Resource: fixture(t, "obs-p2-lab")},
		"read p1":      {Principal: d1, Interaction: Read, Type: "Observation", ID: "o1", Resource: fixture(t, "obs-p1-lab")},
		"create p2":    {Principal: d1, Interaction: Create, Type: "Observation", Resource: fixture(t, "obs-p2-lab")},
		"search":       searchInput(t, d1, "Observation", "patient=p2"),
		"binary":       {Principal: d1, Interaction: Read, Type: "Binary", ID: "bin1", Resource: fixture(t, "binary-b1")},
		"no token":     {Interaction: Read, Type: "Observation", ID: "o1"},
		"patient deny": {Principal: userPrincipal("patient/*.rs", "", "p1"), Interaction: Read, Type: "Observation", ID: "o9", Resource: fixture(t, "obs-p2-lab")},
	}
	shadowDenied := 0
	for name, in := range inputs {
		want, werr := plain.Evaluate(ctx, in)
		got, gerr := withShadow.Evaluate(ctx, in)
		if (werr == nil) != (gerr == nil) || got.Allow != want.Allow || !slices.Equal(got.Reasons, want.Reasons) ||
			got.NotFound != want.NotFound || got.Rule != want.Rule || got.Status() != want.Status() {
			t.Errorf("%s: enforced %+v differs from the decision without shadow %+v", name, got, want)
		}
		if (got.Narrowing == nil) != (want.Narrowing == nil) || (got.Filter == nil) != (want.Filter == nil) {
			t.Errorf("%s: the shadow changed the narrowing or filter", name)
		}
		if in.Query != nil && got.Allow {
			if g, w := narrowed(t, got, in), narrowed(t, want, in); !slices.Equal(g, w) {
				t.Errorf("%s: narrowed %q, want %q", name, g, w)
			}
		}
		if want.Shadow != nil {
			t.Errorf("%s: shadow recorded without a shadow rule set", name)
		}
		if got.Shadow == nil {
			t.Fatalf("%s: no shadow decision", name)
		}
		if got.Shadow.Narrowing != nil || got.Shadow.Filter != nil || got.Shadow.Shadow != nil {
			t.Errorf("%s: the shadow decision carries enforcement", name)
		}
		if got.Allow && !got.Shadow.Allow {
			shadowDenied++
		}
	}
	if shadowDenied < 3 {
		t.Errorf("the shadow denied %d allowed requests, want at least 3 (read p2, create p2, binary)", shadowDenied)
	}
	// What the shadow would have answered is recorded with its reason and rule.
	got, _ := withShadow.Evaluate(ctx, inputs["read p2"])
	if s := got.Shadow; s.Allow || s.Reasons[0] != ReasonOutsideUserAccess || !s.NotFound || s.Rule != "user_access=care-team" {
		t.Errorf("shadow = %+v", s)
	}
	// A search the shadow would narrow to the care team is enforced unnarrowed (all).
	if got, _ := withShadow.Evaluate(ctx, inputs["search"]); !got.Allow || !got.Shadow.Allow ||
		!slices.Contains(got.Shadow.Reasons, ReasonUserAccessNarrowed) || slices.Contains(got.Reasons, ReasonUserAccessNarrowed) {
		t.Errorf("search: enforced %v, shadow %v", got.Reasons, got.Shadow.Reasons)
	}
}

func TestShadowErrorNotEnforced(t *testing.T) {
	e := userEngine(t, nil, func(c *Config) {
		c.Shadow = &Config{UserAccess: CareTeam{Source: failingSource{}}, DenyAsForbidden: true}
	})
	in := Input{Principal: userPrincipal("user/*.rs", "Practitioner/d1", ""), Interaction: Read, Type: "Observation", ID: "o1", Resource: fixture(t, "obs-p1-lab")}
	d, err := e.Evaluate(context.Background(), in)
	if err != nil || !d.Allow || d.Filter == nil {
		t.Fatalf("enforced = %+v, %v; a failing shadow must not change it", d, err)
	}
	if d.Shadow == nil || d.Shadow.Allow || d.Shadow.Reasons[0] != ReasonEvaluationError {
		t.Errorf("shadow = %+v, want evaluation-error", d.Shadow)
	}
}

func TestShadowEnforcedDenyStays(t *testing.T) {
	// Enforced care-team denies; a permissive shadow (all) does not turn it into an allow.
	e := userEngine(t, CareTeam{Source: mapCareTeams{}}, func(c *Config) { c.Shadow = &Config{} })
	in := Input{Principal: userPrincipal("user/*.rs", "Practitioner/d1", ""), Interaction: Read, Type: "Observation", ID: "o1", Resource: fixture(t, "obs-p1-lab")}
	d, err := e.Evaluate(context.Background(), in)
	if err != nil || d.Allow || d.Status() != 404 || d.Filter != nil {
		t.Fatalf("enforced = %+v, %v", d, err)
	}
	if d.Shadow == nil || !d.Shadow.Allow {
		t.Errorf("shadow = %+v, want allow", d.Shadow)
	}
}

func TestShadowConfig(t *testing.T) {
	reg := testRegistry(t)
	base := Config{Registry: reg, Matcher: &fieldMatcher{}, Membership: refMembership{}}
	nested := base
	nested.Shadow = &Config{Shadow: &Config{}}
	if _, err := New(nested); err == nil {
		t.Error("a shadow with a shadow was accepted")
	}
	bad := base
	bad.Shadow = &Config{SharedTypes: []string{"Observation"}}
	if _, err := New(bad); err == nil {
		t.Error("an invalid shadow rule set was accepted")
	}
	neg := base
	neg.MaxUserPatients = -1
	if _, err := New(neg); err == nil {
		t.Error("a negative MaxUserPatients was accepted")
	}
}

func TestShadowConcurrent(t *testing.T) {
	e := userEngine(t, nil, func(c *Config) {
		c.Shadow = &Config{UserAccess: CareTeam{Source: mapCareTeams{"Practitioner/d1": {"p1"}}}}
	})
	in := searchInput(t, userPrincipal("user/*.rs", "Practitioner/d1", ""), "Observation", "")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				d, err := e.Evaluate(context.Background(), in)
				if err != nil || !d.Allow || d.Shadow == nil || !d.Shadow.Allow {
					t.Errorf("%+v %v", d, err)
					return
				}
				d.Filter.Check("Observation", fixture(t, "obs-p2-lab"))
			}
		})
	}
	wg.Wait()
}

func TestNewUserAccess(t *testing.T) {
	for name, want := range map[string]string{"": UserAccessAll, "all": UserAccessAll, "compartment": UserAccessCompartment, "care-team": UserAccessCareTeam} {
		ua, err := NewUserAccess(name, mapCareTeams{})
		if err != nil || ua.Name() != want {
			t.Errorf("NewUserAccess(%q) = %v, %v", name, ua, err)
		}
	}
	for _, name := range []string{"care-team"} {
		if _, err := NewUserAccess(name, nil); err == nil {
			t.Errorf("NewUserAccess(%q) without a source accepted", name)
		}
	}
	for _, name := range []string{"ALL", "careteam", "openfga", " all"} {
		if _, err := NewUserAccess(name, mapCareTeams{}); err == nil {
			t.Errorf("NewUserAccess(%q) accepted", name)
		}
	}
}

func TestPractitionerCompartmentTable(t *testing.T) {
	params, err := practitionerParams(testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]string{"Observation": "performer", "Encounter": "participant", "CareTeam": "participant", "Patient": "general-practitioner"} {
		ps := params["Practitioner"][typ]
		if len(ps) == 0 || ps[0].Code != want {
			t.Errorf("%s: first parameter %v, want %s", typ, ps, want)
		}
	}
	// Encounter.practitioner targets Practitioner only: a role is found through participant.
	for _, p := range params["PractitionerRole"]["Encounter"] {
		if p.Code == "practitioner" {
			t.Error("Encounter.practitioner listed for PractitionerRole")
		}
	}
}

func TestRefusedStatus(t *testing.T) {
	hide := userEngine(t, nil, nil)
	reveal := userEngine(t, nil, func(c *Config) { c.DenyAsForbidden = true })
	in := Input{Principal: userPrincipal("patient/*.rs", "", "p1"), Interaction: Read, Type: "Observation", ID: "o9"}
	d1, _ := hide.Evaluate(context.Background(), in)
	d2, _ := reveal.Evaluate(context.Background(), in)
	if !d1.Allow || d1.RefusedStatus() != 404 || !d2.Allow || d2.RefusedStatus() != 403 {
		t.Errorf("RefusedStatus = %d, %d; want 404, 403", d1.RefusedStatus(), d2.RefusedStatus())
	}
}
