package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

func labelEngine(t *testing.T, lp *LabelPolicy, cs ConsentSource) *Engine {
	t.Helper()
	e, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Labels: lp, Consents: cs})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// labelled is an Observation of p1 with the given security labels (system|code).
func labelled(id string, labels ...string) []byte {
	var sec []string
	for _, l := range labels {
		sys, code, _ := strings.Cut(l, "|")
		sec = append(sec, fmt.Sprintf(`{"system":%q,"code":%q}`, sys, code))
	}
	meta := ""
	if len(sec) > 0 {
		meta = `,"meta":{"security":[` + strings.Join(sec, ",") + `]}`
	}
	return []byte(`{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}` + meta + `}`)
}

func conf(c string) string { return ConfidentialitySystem + "|" + c }
func sens(c string) string { return ActCodeSystem + "|" + c }

func withClearance(p *authn.Principal, c string, s ...string) *authn.Principal {
	p.Clearance = &authn.Clearance{Confidentiality: c, Sensitivity: s}
	return p
}

// TestClearanceConfidentiality: every confidentiality label against every clearance, for a
// read (refused as not found), a search (the narrowing's clause) and an include (the filter).
func TestClearanceConfidentiality(t *testing.T) {
	e := labelEngine(t, &LabelPolicy{}, nil)
	ctx := context.Background()
	for ci, clear := range authn.ConfidentialityLevels {
		for li, lab := range authn.ConfidentialityLevels {
			want := li <= ci
			t.Run(clear+"/"+lab, func(t *testing.T) {
				body := labelled("o1", conf(lab))
				p := withClearance(principal("user/*.rs", "", "Practitioner/d1"), clear)
				d, err := e.Evaluate(ctx, Input{Principal: p, Interaction: Read, Type: "Observation", ID: "o1", Resource: body})
				if err != nil {
					t.Fatal(err)
				}
				if d.Allow != want {
					t.Fatalf("read allow = %v, want %v (%v)", d.Allow, want, d.Reasons)
				}
				if !want && (d.Status() != 404 || d.Reasons[0] != ReasonLabelAboveClearance || d.Rule != "clearance") {
					t.Errorf("refusal = %d %v %q", d.Status(), d.Reasons, d.Rule)
				}
				// The search clause hides exactly the levels above the clearance.
				sd, _ := e.Evaluate(ctx, Input{Principal: p, Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
				q := &search.Query{Types: []string{"Observation"}}
				if err := sd.Narrowing.Narrow(q); err != nil {
					t.Fatal(err)
				}
				ok, err := realMatcher(t).Matches("Observation", body, q.Clauses)
				if err != nil || ok != want {
					t.Errorf("narrowed search matches = %v (%v), want %v", ok, err, want)
				}
				// No sensitivity code is cleared, so every search is narrowed.
				if !slices.Contains(sd.Reasons, ReasonLabelsNarrowed) {
					t.Errorf("reasons %v lack labels-narrowed", sd.Reasons)
				}
				// An _include of the resource passes the filter only within the clearance.
				if ok, _ := sd.Filter.Check("Observation", body); ok != want {
					t.Errorf("filter = %v, want %v", ok, want)
				}
			})
		}
	}
}

// TestClearanceSensitivity: each sensitivity code against clearances that list it, list others,
// or list none; the default clearance applies to tokens without a clearance claim; break-glass
// lifts sensitivity and raises confidentiality to R but never to V.
func TestClearanceSensitivity(t *testing.T) {
	e := labelEngine(t, &LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}, nil)
	ctx := context.Background()
	btg := func(p *authn.Principal) *authn.Principal {
		p.PurposeOfUse = []string{"BTG"}
		p.BreakGlass = &authn.BreakGlass{Reason: "unconscious patient"}
		return p
	}
	tests := []struct {
		name   string
		p      *authn.Principal
		labels []string
		want   bool
	}{
		{"unlabelled, default clearance", principal("user/*.rs", "", "Practitioner/d1"), nil, true},
		{"normal, default clearance", principal("user/*.rs", "", "Practitioner/d1"), []string{conf("N")}, true},
		{"restricted, default clearance", principal("user/*.rs", "", "Practitioner/d1"), []string{conf("R")}, false},
		{"HIV, default clearance", principal("user/*.rs", "", "Practitioner/d1"), []string{sens("HIV")}, false},
		{"HIV, cleared for HIV", withClearance(principal("user/*.rs", "", "Practitioner/d1"), "R", "HIV"), []string{conf("R"), sens("HIV")}, true},
		{"HIV, cleared for PSY", withClearance(principal("user/*.rs", "", "Practitioner/d1"), "R", "PSY"), []string{conf("R"), sens("HIV")}, false},
		{"HIV+PSY, cleared for PSY only", withClearance(principal("user/*.rs", "", "Practitioner/d1"), "V", "PSY"), []string{sens("HIV"), sens("PSY")}, false},
		{"HIV+PSY, cleared for both", withClearance(principal("user/*.rs", "", "Practitioner/d1"), "V", "PSY", "HIV"), []string{sens("HIV"), sens("PSY")}, true},
		{"code outside the vocabulary", principal("user/*.rs", "", "Practitioner/d1"), []string{sens("NOTACODE")}, true},
		{"same code, other system", principal("user/*.rs", "", "Practitioner/d1"), []string{"http://example.org|HIV"}, true},
		{"system scope, default clearance", principal("system/*.rs", "", ""), []string{sens("SUD")}, false},
		{"patient token, default clearance", principal("patient/*.rs", "p1", ""), []string{sens("PSY")}, false},
		{"break-glass lifts sensitivity", btg(principal("user/*.rs", "", "Practitioner/d1")), []string{conf("R"), sens("HIV")}, true},
		{"break-glass does not lift V", btg(principal("user/*.rs", "", "Practitioner/d1")), []string{conf("V")}, false},
		{"BTG purpose without a reason is no break-glass", func() *authn.Principal {
			p := principal("user/*.rs", "", "Practitioner/d1")
			p.PurposeOfUse = []string{"BTG"}
			return p
		}(), []string{sens("HIV")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := labelled("o1", tt.labels...)
			d, err := e.Evaluate(ctx, Input{Principal: tt.p, Interaction: Read, Type: "Observation", ID: "o1", Resource: body})
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.want {
				t.Errorf("read allow = %v, want %v (%v)", d.Allow, tt.want, d.Reasons)
			}
			sd, err := e.Evaluate(ctx, Input{Principal: tt.p, Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
			if err != nil || !sd.Allow {
				t.Fatalf("search: %+v %v", sd, err)
			}
			q := &search.Query{Types: []string{"Observation"}}
			if err := sd.Narrowing.Narrow(q); err != nil {
				t.Fatal(err)
			}
			ok, err := realMatcher(t).Matches("Observation", body, q.Clauses)
			if err != nil || ok != tt.want {
				t.Errorf("narrowed search matches = %v (%v), want %v", ok, err, tt.want)
			}
		})
	}
}

// TestLabelsMultiTypeSearch: the label clause is one query-wide clause, so system searches over
// several types and $everything stay possible.
func TestLabelsMultiTypeSearch(t *testing.T) {
	e := labelEngine(t, &LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}, nil)
	ctx := context.Background()
	p := principal("system/*.rs", "", "")
	d, err := e.Evaluate(ctx, Input{Principal: p, Interaction: SearchSystem, Query: &search.Query{Types: []string{"Observation", "Condition"}}})
	if err != nil || !d.Allow {
		t.Fatalf("%+v %v", d, err)
	}
	q := &search.Query{Types: []string{"Observation", "Condition"}}
	if err := d.Narrowing.Narrow(q); err != nil {
		t.Fatal(err)
	}
	if len(q.Clauses) != 1 || q.Clauses[0].Modifier != "not" || q.Clauses[0].Param.Code != "_security" {
		t.Fatalf("clauses = %+v", q.Clauses)
	}
	if !d.Narrowing.LabelsOnly() {
		t.Error("LabelsOnly = false for a system token")
	}
	// Every type: the clause is compiled for all of them.
	d, _ = e.Evaluate(ctx, Input{Principal: p, Interaction: SearchSystem, Query: &search.Query{}})
	q = &search.Query{}
	if err := d.Narrowing.Narrow(q); err != nil || len(q.Clauses) != 1 {
		t.Fatalf("every type: %v %+v", err, q.Clauses)
	}
	// $everything: For adds the clause per type.
	pt := principal("patient/*.rs", "p1", "")
	d, _ = e.Evaluate(ctx, Input{Principal: pt, Interaction: Operation, Operation: "$everything", Type: "Patient", ID: "p1"})
	cl, ok := d.Narrowing.For("Observation")
	if !ok || len(cl) != 1 || cl[0].Modifier != "not" {
		t.Fatalf("For = %+v %v", cl, ok)
	}
	// Without a label policy nothing is added.
	plain := labelEngine(t, nil, nil)
	d, _ = plain.Evaluate(ctx, Input{Principal: p, Interaction: SearchSystem, Query: &search.Query{Types: []string{"Observation"}}})
	if d.Narrowing != nil {
		t.Errorf("narrowing without labels = %+v", d.Narrowing)
	}
}

func TestLabelPolicyValidation(t *testing.T) {
	for _, lp := range []*LabelPolicy{
		{Default: authn.Clearance{Confidentiality: "X"}},
		{Sensitivity: []string{"A,B"}},
	} {
		if _, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Labels: lp}); err == nil {
			t.Errorf("%+v accepted", lp)
		}
	}
}
