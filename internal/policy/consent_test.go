package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// consents is a test ConsentSource: patient → Consent bodies.
type consents struct {
	by  map[string][]string
	err error
}

func (c consents) PatientConsents(_ context.Context, patient string) ([][]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	var out [][]byte
	for _, b := range c.by[patient] {
		out = append(out, []byte(b))
	}
	return out, nil
}

func (c consents) ConsentPatients(_ context.Context, limit int) ([]string, error) {
	if c.err != nil {
		return nil, c.err
	}
	var out []string
	for p := range c.by {
		out = append(out, p)
	}
	return out, nil
}

// consentOf is an active patient-privacy Consent of p1 with the given provision JSON.
func consentOf(provision string) string {
	return `{"resourceType":"Consent","id":"c1","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"text":"privacy"}],"patient":{"reference":"Patient/p1"},"provision":` + provision + `}`
}

const (
	classObs   = `{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}`
	classCond  = `{"system":"http://hl7.org/fhir/resource-types","code":"Condition"}`
	actorSmith = `{"reference":{"reference":"Practitioner/d1"}}`
	actorApp   = `{"reference":{"identifier":{"system":"urn:ietf:params:oauth:client-id","value":"c"}}}`
	labelHIV   = `{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}`
)

func obsAt(id, updated string, labels ...string) []byte {
	var sec []string
	for _, l := range labels {
		sys, code, _ := strings.Cut(l, "|")
		sec = append(sec, fmt.Sprintf(`{"system":%q,"code":%q}`, sys, code))
	}
	return []byte(`{"resourceType":"Observation","id":"` + id + `","meta":{"lastUpdated":"` + updated + `","security":[` + strings.Join(sec, ",") + `]},"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}`)
}

func condP1() []byte {
	return []byte(`{"resourceType":"Condition","id":"k1","subject":{"reference":"Patient/p1"},"code":{"text":"x"}}`)
}

// TestConsentProvisionShapes: each provision shape, for a practitioner reading p1's data, a
// patient-bound search (its clauses must select exactly what the read check lets through), and
// the ResponseFilter (includes).
func TestConsentProvisionShapes(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	plain := obsAt("o1", "2024-03-01T00:00:00Z")
	hiv := obsAt("o2", "2024-03-01T00:00:00Z", sens("HIV"))
	old := obsAt("o3", "2019-03-01T00:00:00Z")
	dr := func() *authn.Principal {
		p := principal("user/*.rs", "", "Practitioner/d1")
		p.PurposeOfUse = []string{"TREAT"}
		return p
	}
	other := func() *authn.Principal { return principal("user/*.rs", "", "Practitioner/d2") }
	type check struct {
		body []byte
		typ  string
		want bool
	}
	tests := []struct {
		name      string
		provision string
		p         func() *authn.Principal
		checks    []check
	}{
		{"no consent", "", dr, []check{{plain, "Observation", true}, {hiv, "Observation", true}}},
		// The directives themselves stay reachable (to read or withdraw them).
		{"root deny, everyone (opt-in with no exception)", `{"type":"deny"}`, dr,
			[]check{{plain, "Observation", false}, {condP1(), "Condition", false}, {[]byte(consentOf(`{"type":"deny"}`)), "Consent", true}}},
		{"root deny, nested permit by class", `{"type":"deny","provision":[{"type":"permit","class":[` + classObs + `]}]}`, dr,
			[]check{{plain, "Observation", true}, {condP1(), "Condition", false}}},
		{"root permit, nested deny by actor", `{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `]}]}`, dr,
			[]check{{plain, "Observation", false}}},
		{"deny by actor spares another actor", `{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `]}]}`, other,
			[]check{{plain, "Observation", true}}},
		{"deny by client", `{"type":"permit","provision":[{"type":"deny","actor":[` + actorApp + `]}]}`, other,
			[]check{{plain, "Observation", false}}},
		{"deny by purpose that the token carries", `{"type":"permit","provision":[{"type":"deny","purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"TREAT"}]}]}`, dr,
			[]check{{plain, "Observation", false}}},
		{"deny by purpose that the token lacks", `{"type":"permit","provision":[{"type":"deny","purpose":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"HMARKT"}]}]}`, dr,
			[]check{{plain, "Observation", true}}},
		{"deny by class", `{"type":"permit","provision":[{"type":"deny","class":[` + classCond + `]}]}`, dr,
			[]check{{plain, "Observation", true}, {condP1(), "Condition", false}}},
		{"deny by security label", `{"type":"permit","provision":[{"type":"deny","securityLabel":[` + labelHIV + `]}]}`, dr,
			[]check{{plain, "Observation", true}, {hiv, "Observation", false}}},
		{"deny by data period", `{"type":"permit","provision":[{"type":"deny","dataPeriod":{"start":"2023-01-01","end":"2025-01-01"}}]}`, dr,
			[]check{{plain, "Observation", false}, {old, "Observation", true}}},
		{"permit only a data period", `{"type":"deny","provision":[{"type":"permit","dataPeriod":{"start":"2023-01-01"}}]}`, dr,
			[]check{{plain, "Observation", true}, {old, "Observation", false}}},
		{"permit only a label", `{"type":"deny","provision":[{"type":"permit","securityLabel":[` + labelHIV + `]}]}`, dr,
			[]check{{plain, "Observation", false}, {hiv, "Observation", true}}},
		{"expired provision period", `{"type":"permit","provision":[{"type":"deny","period":{"end":"2025-01-01"}}]}`, dr,
			[]check{{plain, "Observation", true}}},
		{"future provision period", `{"type":"permit","provision":[{"type":"deny","period":{"start":"2027-01-01"}}]}`, dr,
			[]check{{plain, "Observation", true}}},
		// Precedence.
		{"deny beats permit at the same level", `{"type":"permit","provision":[{"type":"permit","class":[` + classObs + `]},{"type":"deny","class":[` + classObs + `]}]}`, dr,
			[]check{{plain, "Observation", false}, {condP1(), "Condition", true}}},
		{"nested permit beats root deny", `{"type":"deny","provision":[{"type":"permit","actor":[` + actorSmith + `]}]}`, dr,
			[]check{{plain, "Observation", true}}},
		{"nested deny beats root permit", `{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `],"class":[` + classObs + `]}]}`, dr,
			[]check{{plain, "Observation", false}, {condP1(), "Condition", true}}},
		{"nested permit of a label under root deny, nested deny of a class", `{"type":"deny","provision":[{"type":"permit","securityLabel":[` + labelHIV + `]},{"type":"deny","class":[` + classObs + `]}]}`, dr,
			[]check{{hiv, "Observation", false}}},
		// Fail closed.
		{"nesting deeper than one level", `{"type":"permit","provision":[{"type":"deny","provision":[{"type":"permit"}]}]}`, dr,
			[]check{{plain, "Observation", false}, {[]byte(consentOf(`{"type":"deny"}`)), "Consent", true}}},
		{"provision without a type", `{"provision":[{"type":"deny"}]}`, dr,
			[]check{{plain, "Observation", false}}},
		{"unknown class", `{"type":"permit","provision":[{"type":"deny","class":[{"system":"http://hl7.org/fhir/resource-types","code":"Nope"}]}]}`, dr,
			[]check{{plain, "Observation", false}}},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := consents{by: map[string][]string{}}
			if tt.provision != "" {
				cs.by["p1"] = []string{consentOf(tt.provision)}
			}
			e, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Consents: cs, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range tt.checks {
				// Read by an unbounded practitioner: the body's patient's Consent.
				d, err := e.Evaluate(ctx, Input{Principal: tt.p(), Interaction: Read, Type: c.typ, ID: "x", Resource: c.body})
				if err != nil {
					t.Fatal(err)
				}
				if d.Allow != c.want {
					t.Errorf("check %d read: allow %v, want %v (%v)", i, d.Allow, c.want, d.Reasons)
				}
				if !d.Allow && (d.Status() != 404 || d.Reasons[0] != ReasonConsentDenied) {
					t.Errorf("check %d read refusal: %d %v", i, d.Status(), d.Reasons)
				}
				// Search naming the patient: the compiled clauses agree with the read.
				q := &search.Query{Types: []string{c.typ}}
				pc, err := search.ParseClause(testRegistry(t), q.Types, "patient", "Patient/p1", search.ParseOptions{})
				if err != nil {
					t.Fatal(err)
				}
				q.Clauses = []search.Clause{pc}
				sd, err := e.Evaluate(ctx, Input{Principal: tt.p(), Interaction: SearchType, Type: c.typ, Query: q})
				if err != nil || !sd.Allow {
					t.Fatalf("check %d search: %+v %v", i, sd, err)
				}
				if err := sd.Narrowing.Narrow(q); err != nil {
					t.Fatal(err)
				}
				ok, err := realMatcher(t).Matches(c.typ, c.body, q.Clauses)
				if err != nil || ok != c.want {
					t.Errorf("check %d narrowed search matches %v (%v), want %v; clauses %d", i, ok, err, c.want, len(q.Clauses))
				}
				// The filter (an _include of the resource in another search).
				fd, _ := e.Evaluate(ctx, Input{Principal: tt.p(), Interaction: Read, Type: "Practitioner", ID: "d1"})
				fd.Filter.only = ""
				if ok, _ := fd.Filter.Check(c.typ, c.body); ok != c.want {
					t.Errorf("check %d filter %v, want %v", i, ok, c.want)
				}
			}
		})
	}
}

// TestConsentScopes: who a Consent binds. The patient's own access is bound only by provisions
// naming the client; a patient-context token launched by a clinician is bound; an unbounded
// search is refused while a patient's Consent restricts the caller; break-glass overrides a
// Consent denial (never the scopes).
func TestConsentScopes(t *testing.T) {
	ctx := context.Background()
	denyAll := consentOf(`{"type":"deny"}`)
	denyApp := consentOf(`{"type":"permit","provision":[{"type":"deny","actor":[` + actorApp + `]}]}`)
	body := obsAt("o1", "2024-03-01T00:00:00Z")
	newE := func(c ...string) *Engine {
		e, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Consents: consents{by: map[string][]string{"p1": c}}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	btg := principal("user/*.rs", "", "Practitioner/d1")
	btg.PurposeOfUse = []string{"BTG"}
	btg.BreakGlass = &authn.BreakGlass{Reason: "cardiac arrest"}
	btgNoScope := principal("user/Condition.rs", "", "Practitioner/d1")
	btgNoScope.PurposeOfUse = []string{"BTG"}
	btgNoScope.BreakGlass = &authn.BreakGlass{Reason: "cardiac arrest"}
	tests := []struct {
		name     string
		e        *Engine
		p        *authn.Principal
		want     bool
		searchOK bool
	}{
		{"patient's own token, deny all", newE(denyAll), principal("patient/*.rs", "p1", "Patient/p1"), true, true},
		{"patient's own token, app denied", newE(denyApp), principal("patient/*.rs", "p1", "Patient/p1"), false, true},
		{"clinician-launched patient token, deny all", newE(denyAll), principal("patient/*.rs", "p1", "Practitioner/d1"), false, true},
		{"unbounded practitioner, deny all", newE(denyAll), principal("user/*.rs", "", "Practitioner/d1"), false, true},
		{"system token, deny all", newE(denyAll), principal("system/*.rs", "", ""), false, true},
		{"break-glass overrides the Consent", newE(denyAll), btg, true, true},
		{"break-glass never widens scopes", newE(denyAll), btgNoScope, false, false},
		{"no consent", newE(), principal("user/*.rs", "", "Practitioner/d1"), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.e.Evaluate(ctx, Input{Principal: tt.p, Interaction: Read, Type: "Observation", ID: "o1", Resource: body})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.want {
				t.Errorf("read: allow %v, want %v (%v)", d.Allow, tt.want, d.Reasons)
			}
			sd, err := tt.e.Evaluate(ctx, Input{Principal: tt.p, Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
			if err != nil {
				t.Fatal(err)
			}
			if sd.Allow != tt.searchOK {
				t.Errorf("unbounded search: allow %v, want %v (%v)", sd.Allow, tt.searchOK, sd.Reasons)
			}
		})
	}
}

// TestConsentSourceErrorFailsClosed: a Consent store that cannot answer refuses with 500.
func TestConsentSourceErrorFailsClosed(t *testing.T) {
	e, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Consents: consents{err: errors.New("down")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []Input{
		{Principal: principal("patient/*.rs", "p1", ""), Interaction: Read, Type: "Observation", ID: "o1"},
		{Principal: principal("user/*.rs", "", "Practitioner/d1"), Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}},
	} {
		d, err := e.Evaluate(context.Background(), in)
		if err == nil || d.Allow || d.Reasons[0] != ReasonEvaluationError {
			t.Errorf("%s: %+v %v", in.Interaction, d, err)
		}
	}
	// A read by an unbounded practitioner looks the Consent up from the body: refused too.
	d, err := e.Evaluate(context.Background(), Input{Principal: principal("user/*.rs", "", "Practitioner/d1"), Interaction: Read, Type: "Observation", ID: "o1", Resource: obsAt("o1", "2024-01-01T00:00:00Z")})
	if err == nil || d.Allow {
		t.Errorf("read: %+v %v", d, err)
	}
}

func TestParseConsentIgnores(t *testing.T) {
	for _, b := range []string{
		strings.Replace(consentOf(`{"type":"deny"}`), `"active"`, `"inactive"`, 1),
		strings.Replace(consentOf(`{"type":"deny"}`), `patient-privacy`, `research`, 1),
		strings.Replace(consentOf(`{"type":"deny"}`), `Patient/p1`, `Patient/p2`, 1),
	} {
		if _, ok, err := ParseConsent([]byte(b), "p1"); ok || err != nil {
			t.Errorf("enforced %s (%v)", b, err)
		}
	}
}

// TestConsentUnboundedSearchExcludes: a search across patients excludes, in the query, the
// data of the patients whose Consent restricts the caller (every compartment parameter), so
// counts and paging stay exact; a Patient search across patients is refused instead; a search
// naming the patient compiles the Consent exactly.
func TestConsentUnboundedSearchExcludes(t *testing.T) {
	ctx := context.Background()
	cs := consents{by: map[string][]string{"p1": {consentOf(`{"type":"permit","provision":[{"type":"deny","securityLabel":[` + labelHIV + `]}]}`)}}}
	e, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Consents: cs})
	if err != nil {
		t.Fatal(err)
	}
	p := principal("user/*.rs", "", "Practitioner/d1")
	d, err := e.Evaluate(ctx, Input{Principal: p, Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	q := &search.Query{Types: []string{"Observation"}}
	if err := d.Narrowing.Narrow(q); err != nil {
		t.Fatal(err)
	}
	m := realMatcher(t)
	p1plain := obsAt("o1", "2024-01-01T00:00:00Z")
	p2 := []byte(strings.ReplaceAll(string(obsAt("o2", "2024-01-01T00:00:00Z", sens("HIV"))), "Patient/p1", "Patient/p2"))
	p1perf := []byte(`{"resourceType":"Observation","id":"o3","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"},"performer":[{"reference":"Patient/p1"}]}`)
	for _, c := range []struct {
		body []byte
		want bool
	}{{p1plain, false}, {p2, true}, {p1perf, false}} {
		ok, err := m.Matches("Observation", c.body, q.Clauses)
		if err != nil || ok != c.want {
			t.Errorf("matches %s = %v (%v), want %v", c.body, ok, err, c.want)
		}
	}
	// Patient across patients: refused.
	d, _ = e.Evaluate(ctx, Input{Principal: p, Interaction: SearchType, Type: "Patient", Query: &search.Query{Types: []string{"Patient"}}})
	if d.Allow || d.Reasons[0] != ReasonConsentDenied || d.Status() != 403 {
		t.Errorf("Patient search: %+v", d)
	}
	// Shared types are not patient data: untouched.
	d, _ = e.Evaluate(ctx, Input{Principal: p, Interaction: SearchType, Type: "Practitioner", Query: &search.Query{Types: []string{"Practitioner"}}})
	if !d.Allow || d.Narrowing != nil {
		t.Errorf("Practitioner search: %+v", d)
	}
}

// TestConsentIncludeOfAnotherPatient: a search bounded to p1 still applies p2's Consent to an
// included resource of p2 (the filter looks up every patient whose compartment holds it).
func TestConsentIncludeOfAnotherPatient(t *testing.T) {
	ctx := context.Background()
	p2deny := strings.ReplaceAll(consentOf(`{"type":"deny"}`), "Patient/p1", "Patient/p2")
	e, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Consents: consents{by: map[string][]string{"p2": {p2deny}}}})
	if err != nil {
		t.Fatal(err)
	}
	q := &search.Query{Types: []string{"Observation"}}
	pc, err := search.ParseClause(testRegistry(t), q.Types, "patient", "Patient/p1", search.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q.Clauses = []search.Clause{pc}
	d, err := e.Evaluate(ctx, Input{Principal: principal("user/*.rs", "", "Practitioner/d1"), Interaction: SearchType, Type: "Observation", Query: q})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	p2obs := []byte(strings.ReplaceAll(string(obsAt("o2", "2024-01-01T00:00:00Z")), "Patient/p1", "Patient/p2"))
	if ok, why := d.Filter.Check("Observation", p2obs); ok || why != ReasonConsentDenied {
		t.Errorf("p2's observation in p1's search: %v %s", ok, why)
	}
	if ok, _ := d.Filter.Check("Observation", obsAt("o1", "2024-01-01T00:00:00Z")); !ok {
		t.Error("p1's observation refused")
	}
}
