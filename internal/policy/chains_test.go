package policy

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// linkFilters describes the Filter of every link of the first clause of q, outermost first:
// "code:modifier=raw,raw & ..." ("" for a link without one).
func linkFilters(q *search.Query) []string {
	var out []string
	c := q.Clauses[0]
	for {
		var f []search.Clause
		switch {
		case c.Chain != nil:
			f, c = c.Chain.Filter, c.Chain.Clause
		case c.Reverse != nil:
			f, c = c.Reverse.Filter, c.Reverse.Clause
		default:
			return out
		}
		var parts []string
		for _, fc := range f {
			key := fc.Param.Code
			if fc.Modifier != "" {
				key += ":" + fc.Modifier
			}
			var vals []string
			for _, v := range fc.Values {
				vals = append(vals, v.Raw)
			}
			parts = append(parts, key+"="+strings.Join(vals, ","))
		}
		slices.Sort(parts)
		out = append(out, strings.Join(parts, " & "))
	}
}

func parseQuery(t *testing.T, typ, raw string) *search.Query {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := search.Parse(testRegistry(t), []string{typ}, v, search.ParseOptions{Strict: true})
	if err != nil {
		t.Fatalf("%s?%s: %v", typ, raw, err)
	}
	return q
}

func breakGlass(p *authn.Principal) *authn.Principal {
	p.PurposeOfUse = []string{authn.PurposeBreakGlass}
	p.BreakGlass = &authn.BreakGlass{Reason: "ER"}
	return p
}

// TestChainFilters: Narrow sets on every link of a chain or _has the label clause and the
// Consent clauses a search of the link's target type would get, and refuses a link whose
// targets a Consent keeps out of searches across patients.
func TestChainFilters(t *testing.T) {
	const (
		hideRVN = "_security:not=*" // the label clause, its hidden labels checked below
		excl    = "performer:not=Patient/p1 & subject:not=Patient/p1"
	)
	ctx := context.Background()
	denyD1 := consentOf(`{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `]}]}`)
	denyHIV := consentOf(`{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `],"securityLabel":[` + labelHIV + `]}]}`)
	denyObsD1 := consentOf(`{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `],"class":[` + classObs + `]}]}`)
	clearN := &LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}
	clearAll := &LabelPolicy{Default: authn.Clearance{Confidentiality: "V", Sensitivity: []string{"*"}}}
	user := func() *authn.Principal { return principal("user/*.rs", "", "Practitioner/d1") }
	tests := []struct {
		name     string
		labels   *LabelPolicy
		consents map[string][]string
		p        *authn.Principal
		typ, raw string
		want     []string // per link; nil: no Narrowing at all
		refused  bool
	}{
		{"nothing hidden: no narrowing", clearAll, nil, user(), "Observation", "subject:Patient.name=x", nil, false},
		{"nothing hidden, consents elsewhere", clearAll, map[string][]string{"p1": {denyObsD1}}, principal("user/*.rs", "", "Practitioner/d2"),
			"Patient", "_has:Observation:patient:code=1", []string{""}, false},
		{"labels: chain", clearN, nil, user(), "Observation", "subject:Patient.name=x", []string{hideRVN}, false},
		{"labels: _has", clearN, nil, user(), "Patient", "_has:Observation:patient:code=1", []string{hideRVN}, false},
		{"labels: nested chain", clearN, nil, user(), "Observation", "subject:Patient.organization.name=x", []string{hideRVN, hideRVN}, false},
		{"labels: nested _has", clearN, nil, user(), "Organization", "_has:Patient:organization:_has:Observation:patient:code=1", []string{hideRVN, hideRVN}, false},
		{"labels: _has in a chain", clearN, nil, user(), "Observation", "subject:Patient._has:Condition:patient:code=1", []string{hideRVN, hideRVN}, false},
		{"consent across patients: _has excludes p1", clearAll, map[string][]string{"p1": {denyD1}}, user(),
			"Practitioner", "_has:Observation:performer:code=1", []string{excl}, false},
		{"consent across patients: labels and exclusion", clearN, map[string][]string{"p1": {denyD1}}, user(),
			"Practitioner", "_has:Observation:performer:code=1", []string{hideRVN + " & " + excl}, false},
		{"consent across patients: a chain into Patient is refused", clearAll, map[string][]string{"p1": {denyD1}}, user(),
			"Observation", "subject:Patient.name=x", nil, true},
		{"consent across patients: nested, refused at the second link", clearAll, map[string][]string{"p1": {denyD1}}, user(),
			"PractitionerRole", "practitioner:Practitioner._has:Patient:general-practitioner:name=x", nil, true},
		{"consent of another patient in a bound search", clearAll, map[string][]string{"p1": {denyD1}}, user(),
			"Patient", "_id=p2&_has:Observation:patient:code=1", []string{excl}, false},
		{"consent of the bound patient", clearAll, map[string][]string{"p1": {denyHIV}}, user(),
			"Patient", "_id=p1&_has:Observation:patient:code=1", []string{"_security:not=" + sens("HIV")}, false},
		{"consent not applying to this user", clearAll, map[string][]string{"p1": {denyD1}}, principal("user/*.rs", "", "Practitioner/d2"),
			"Practitioner", "_has:Observation:performer:code=1", []string{""}, false},
		{"break-glass lifts Consents and sensitivity codes", clearN, map[string][]string{"p1": {denyD1}}, breakGlass(user()),
			"Practitioner", "_has:Observation:performer:code=1", []string{hideRVN}, false},
		{"patient token: chain to a shared type", clearN, nil, principal("patient/*.rs", "p1", ""),
			"Observation", "performer:Practitioner.name=x", []string{hideRVN}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cs ConsentSource
			if tt.consents != nil {
				cs = consents{by: tt.consents}
			}
			e := labelEngine(t, tt.labels, cs)
			q := parseQuery(t, tt.typ, tt.raw)
			d, err := e.Evaluate(ctx, Input{Principal: tt.p, Interaction: SearchType, Type: tt.typ, Query: q})
			if err != nil || !d.Allow {
				t.Fatalf("Evaluate: %+v %v", d, err)
			}
			if tt.want == nil && !tt.refused {
				if d.Narrowing != nil {
					t.Errorf("Narrowing = %+v, want none", d.Narrowing)
				}
				return
			}
			err = d.Narrowing.Narrow(q)
			if tt.refused {
				if !errors.Is(err, ErrNarrowing) {
					t.Fatalf("Narrow = %v, want ErrNarrowing", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := linkFilters(q)
			for i, g := range got {
				// The label clause hides R and V above N, and the sensitivity codes; break-glass
				// raises the clearance to R and lifts the codes.
				parts := strings.Split(g, " & ")
				for j, part := range parts {
					if !strings.HasPrefix(part, "_security:not=") || !strings.Contains(part, conf("V")) {
						continue
					}
					btg := tt.p.IsBreakGlass()
					if strings.Contains(part, conf("N")) || strings.Contains(part, conf("R")) == btg || strings.Contains(part, sens("HIV")) == btg {
						t.Errorf("link %d: label clause %q (break-glass %v)", i, part, btg)
					}
					parts[j] = hideRVN
				}
				got[i] = strings.Join(parts, " & ")
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("filters %q, want %q", got, tt.want)
			}
			// Narrowing again replaces the filters: none is doubled.
			if err := d.Narrowing.Narrow(q); err != nil {
				t.Fatal(err)
			}
			if again := linkFilters(q); len(again) != len(got) || strings.Count(strings.Join(again, ";"), "&") != strings.Count(strings.Join(got, ";"), "&") {
				t.Errorf("second Narrow: %q, first %q", again, got)
			}
		})
	}
}

// TestChainFiltersMatchTheirTargets: the filter on a _has link selects, among candidate
// targets, exactly those a search of the target type would return (checked with the Matcher on
// bodies: labelled, another patient's, a Consent-denied patient's).
func TestChainFiltersMatchTheirTargets(t *testing.T) {
	ctx := context.Background()
	e := labelEngine(t, &LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}},
		consents{by: map[string][]string{"p1": {consentOf(`{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `]}]}`)}}})
	q := parseQuery(t, "Practitioner", "_has:Observation:performer:code=1")
	d, err := e.Evaluate(ctx, Input{Principal: principal("user/*.rs", "", "Practitioner/d1"), Interaction: SearchType, Type: "Practitioner", Query: q})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	if err := d.Narrowing.Narrow(q); err != nil {
		t.Fatal(err)
	}
	filter := q.Clauses[0].Reverse.Filter
	p2 := func(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), "Patient/p1", "Patient/p2")) }
	for _, c := range []struct {
		name string
		body []byte
		want bool
	}{
		{"p2, no label", p2(labelled("o1")), true},
		{"p2, N", p2(labelled("o2", conf("N"))), true},
		{"p2, R", p2(labelled("o3", conf("R"))), false},
		{"p2, HIV", p2(labelled("o4", sens("HIV"))), false},
		{"p1 (Consent denies d1)", labelled("o5"), false},
	} {
		ok, err := realMatcher(t).Matches("Observation", c.body, filter)
		if err != nil || ok != c.want {
			t.Errorf("%s: matches = %v (%v), want %v", c.name, ok, err, c.want)
		}
	}
}

// TestChainFilterUntypedChain: a chain link without a type (several possible targets) cannot
// carry per-type Consent clauses: refused; the label clause alone covers every target type.
func TestChainFilterUntypedChain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		cs      ConsentSource
		refused bool
	}{
		{"labels only", nil, false},
		{"consent on one target type", consents{by: map[string][]string{"p1": {consentOf(`{"type":"permit","provision":[{"type":"deny","actor":[` + actorSmith + `],"class":[` + classObs + `]}]}`)}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := labelEngine(t, &LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}, tc.cs)
			q := parseQuery(t, "Provenance", "target:Observation.code=1")
			q.Clauses[0].Chain.Type = "" // as if any target type were allowed
			q.Clauses[0].Param = &search.Param{Code: "target", Type: search.TypeReference, Targets: []string{"Observation", "Practitioner"}}
			d, err := e.Evaluate(ctx, Input{Principal: principal("user/*.rs", "", "Practitioner/d1"), Interaction: SearchType, Type: "Provenance", Query: q})
			if err != nil || !d.Allow {
				t.Fatalf("%+v %v", d, err)
			}
			err = d.Narrowing.Narrow(q)
			if tc.refused != errors.Is(err, ErrNarrowing) || (!tc.refused && err != nil) {
				t.Fatalf("Narrow = %v, refused want %v", err, tc.refused)
			}
			if !tc.refused {
				if f := q.Clauses[0].Chain.Filter; len(f) != 1 || f[0].Param.Code != "_security" {
					t.Errorf("filter %+v", f)
				}
			}
		})
	}
}
