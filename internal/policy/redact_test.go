package policy

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// redactEngine redacts HIV (Observation: values, notes, components, interpretation) and R
// (Observation: notes only); PSY stays hidden.
func redactEngine(t *testing.T) *Engine {
	return labelEngine(t, &LabelPolicy{Redact: []Redaction{
		{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"value[x]", "note", "component", "interpretation"}}},
		{Labels: []string{"R"}, Elements: map[string][]string{"Observation": {"note"}}},
	}}, nil)
}

func redactable(id string, labels ...string) []byte {
	body := strings.TrimSuffix(string(labelled(id, labels...)), "}")
	return []byte(body + `,"text":{"status":"generated","div":"<div>viral load 1200</div>"},"valueQuantity":{"value":1200},"note":[{"text":"n"}]}`)
}

func TestRedactionRelease(t *testing.T) {
	e := redactEngine(t)
	ctx := context.Background()
	clinician := withClearance(principal("user/*.cruds", "", "Practitioner/d1"), "N")
	tests := []struct {
		name     string
		labels   []string
		visible  bool
		redacted bool
		gone     []string // elements absent from the released body
	}{
		{"unlabelled: whole", nil, true, false, nil},
		{"HIV: redacted", []string{sens("HIV")}, true, true, []string{"valueQuantity", "note", "text"}},
		{"R+HIV: union of both redactions", []string{conf("R"), sens("HIV")}, true, true, []string{"valueQuantity", "note", "text"}},
		{"R alone: only its elements", []string{conf("R")}, true, true, []string{"note", "text"}},
		{"HIV+PSY: PSY is hidden, so all is", []string{sens("HIV"), sens("PSY")}, false, false, nil},
		{"V: hidden", []string{conf("V")}, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := redactable("o1", tt.labels...)
			d, err := e.Evaluate(ctx, Input{Principal: clinician, Interaction: Read, Type: "Observation", ID: "o1", Resource: body})
			if err != nil || d.Allow != tt.visible {
				t.Fatalf("read allow = %v (%v), want %v", d.Allow, err, tt.visible)
			}
			sd, _ := e.Evaluate(ctx, Input{Principal: clinician, Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
			out, redacted, why := sd.Filter.Release("Observation", body)
			if (why == "") != tt.visible || redacted != tt.redacted {
				t.Fatalf("Release: redacted %v why %q, want visible %v redacted %v", redacted, why, tt.visible, tt.redacted)
			}
			// The search clause keeps what the filter releases (counts and pages stay exact).
			q := &search.Query{Types: []string{"Observation"}}
			if err := sd.Narrowing.Narrow(q); err != nil {
				t.Fatal(err)
			}
			if ok, err := realMatcher(t).Matches("Observation", body, q.Clauses); err != nil || ok != tt.visible {
				t.Errorf("narrowed search matches = %v (%v), want %v", ok, err, tt.visible)
			}
			if !tt.visible {
				return
			}
			var m map[string]any
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatal(err)
			}
			for _, g := range tt.gone {
				if _, ok := m[g]; ok {
					t.Errorf("%s still in %s", g, out)
				}
			}
			if tt.redacted != strings.Contains(string(out), `"SUBSETTED"`) {
				t.Errorf("SUBSETTED tag: %s", out)
			}
			if _, ok := m["subject"]; !ok {
				t.Errorf("subject removed: %s", out)
			}
			// A resource seen only redacted cannot be changed nor deleted (403, not 404).
			for _, in := range []Input{
				{Interaction: Update, Type: "Observation", ID: "o1", Resource: labelled("o1"), Current: body},
				{Interaction: Delete, Type: "Observation", ID: "o1", Current: body},
				{Interaction: Create, Type: "Observation", Resource: body},
			} {
				in.Principal = clinician
				wd, _ := e.Evaluate(ctx, in)
				if wd.Allow == tt.redacted || (tt.redacted && (wd.Status() != 403 || wd.Reasons[0] != ReasonRedacted)) {
					t.Errorf("%s: allow %v status %d %v", in.Interaction, wd.Allow, wd.Status(), wd.Reasons)
				}
			}
		})
	}
	// A Condition labelled HIV is not redacted for Conditions: hidden.
	sd, _ := e.Evaluate(ctx, Input{Principal: clinician, Interaction: SearchType, Type: "Condition", Query: &search.Query{Types: []string{"Condition"}}})
	cond := []byte(`{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"},"meta":{"security":[{"system":"` + ActCodeSystem + `","code":"HIV"}]}}`)
	if _, _, why := sd.Filter.Release("Condition", cond); why != ReasonLabelAboveClearance {
		t.Errorf("Condition labelled HIV: %q", why)
	}
	q := &search.Query{Types: []string{"Condition"}}
	if err := sd.Narrowing.Narrow(q); err != nil {
		t.Fatal(err)
	}
	if ok, _ := realMatcher(t).Matches("Condition", cond, q.Clauses); ok {
		t.Error("the Condition search keeps the HIV Condition")
	}
}

// TestRedactionStrictSearch: a search whose answer depends on a removed element runs with the
// redacted labels hidden, so that no one learns a removed value by searching for it.
func TestRedactionStrictSearch(t *testing.T) {
	e := redactEngine(t)
	ctx := context.Background()
	clinician := withClearance(principal("user/*.rs", "", "Practitioner/d1"), "N")
	reg := testRegistry(t)
	body := redactable("o1", sens("HIV"))
	tests := []struct {
		query  string
		strict bool
	}{
		{"patient=Patient/p1", false},
		{"patient=Patient/p1&code=x&date=ge2020", false},
		{"_id=o1", false},
		{"_security=" + url.QueryEscape(sens("HIV")), false},
		{"_sort=date", false},
		{"_include=Observation:patient", false},
		{"value-quantity=gt1000", true},
		{"value-concept=abc", true},
		{"component-value-quantity=gt1", true},
		{"code-value-quantity=" + url.QueryEscape("x$gt1000"), true},
		{"combo-code-value-quantity=" + url.QueryEscape("x$gt1000"), true},
		{"combo-code=x", true}, // Observation.component.code: component is removed
		{"_sort=value-quantity", true},
		{"_include=Observation:*", true},
		{"_include=Observation:has-member", false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			vals, _ := url.ParseQuery(tt.query)
			q, _, err := search.Parse(reg, []string{"Observation"}, vals, search.ParseOptions{Now: time.Now, Strict: true})
			if err != nil {
				t.Skipf("not searchable here: %v", err)
			}
			d, err := e.Evaluate(ctx, Input{Principal: clinician, Interaction: SearchType, Type: "Observation", Query: q})
			if err != nil || !d.Allow {
				t.Fatalf("%v %v", err, d.Reasons)
			}
			_, _, why := d.Filter.Release("Observation", body)
			if (why != "") != tt.strict {
				t.Errorf("redacted Observation refused = %q, want strict %v", why, tt.strict)
			}
			nq := &search.Query{Types: []string{"Observation"}}
			if err := d.Narrowing.Narrow(nq); err != nil {
				t.Fatal(err)
			}
			if ok, _ := realMatcher(t).Matches("Observation", body, nq.Clauses); ok == tt.strict {
				t.Errorf("narrowed search keeps the redacted Observation = %v, want %v", ok, !tt.strict)
			}
		})
	}
}

func TestRedactionConfig(t *testing.T) {
	for _, r := range []Redaction{
		{Labels: []string{"NOTACODE"}, Elements: map[string][]string{"Observation": {"note"}}},
		{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"meta"}}},
		{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"nothing"}}},
		{Labels: []string{"HIV"}},
		{Elements: map[string][]string{"Observation": {"note"}}},
	} {
		if _, err := New(Config{Registry: testRegistry(t), Matcher: realMatcher(t), Membership: realMembership(t), Labels: &LabelPolicy{Redact: []Redaction{r}}}); err == nil {
			t.Errorf("redaction %+v accepted", r)
		}
	}
}

func TestExpressionPaths(t *testing.T) {
	tests := []struct{ typ, expr, want string }{
		{"Observation", "(Observation.value as Quantity) | (Observation.value as SampledData)", "value,value"},
		{"Observation", "Observation.component.value.as(Quantity)", "component.value"},
		{"Observation", "Observation.subject.where(resolve() is Patient)", "subject"},
		{"Observation", "Observation", ""},
		{"Observation", "ObservationDefinition.code", ""},
		{"Patient", "Resource.meta.lastUpdated", "meta.lastUpdated"},
		{"", "value.as(Quantity)", "value"},
	}
	for _, tt := range tests {
		if got := strings.Join(expressionPaths(tt.typ, tt.expr), ","); got != tt.want {
			t.Errorf("expressionPaths(%s, %q) = %q, want %q", tt.typ, tt.expr, got, tt.want)
		}
	}
	// A parameter without an expression (_text, _content) may read anything.
	if !paramUses("Observation", &search.Param{Code: "_text", Type: search.TypeString}, []string{"note"}) {
		t.Error("_text does not reach removed elements")
	}
	for _, tt := range []struct {
		used, removed string
		want          bool
	}{
		{"value", "valueQuantity", true}, {"component", "component.value", true}, {"component.value", "component", true},
		{"component.code", "component.value", false}, {"code", "component", false}, {"", "note", true},
	} {
		if got := pathsOverlap(tt.used, tt.removed); got != tt.want {
			t.Errorf("pathsOverlap(%q, %q) = %v", tt.used, tt.removed, got)
		}
	}
}

func FuzzExpressionPaths(f *testing.F) {
	for _, s := range []string{"(Observation.value as Quantity)", "Observation.component.value.as(Quantity)", "Observation", "Resource.meta.tag", "Observation.", ".Observation.x"} {
		f.Add("Observation", s)
	}
	f.Fuzz(func(t *testing.T, typ, expr string) {
		for _, p := range expressionPaths(typ, expr) {
			if strings.ContainsAny(p, "() |") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
				t.Fatalf("expressionPaths(%q, %q) gave %q", typ, expr, p)
			}
		}
	})
}
