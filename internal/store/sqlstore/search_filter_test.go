package sqlstore_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// filterResources add labelled resources to searchResources: the access policy's Filter on a
// chain or _has must keep them out of the target side of the chain.
var filterResources = []struct{ typ, id, body string }{
	{"Organization", "org-3", `{"resourceType":"Organization","name":"Acme Secret",
		"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}}`},
	{"Patient", "pat-4", `{"resourceType":"Patient","name":[{"family":"Hidden","given":["Peter"]}],
		"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"V"}]},
		"managingOrganization":{"reference":"Organization/org-1"}}`},
	{"Patient", "pat-5", `{"resourceType":"Patient","name":[{"given":["Paul"]}],"managingOrganization":{"reference":"Organization/org-3"}}`},
	{"Observation", "obs-6", `{"resourceType":"Observation","status":"final",
		"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},
		"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},"subject":{"reference":"Patient/pat-4"}}`},
	{"Observation", "obs-7", `{"resourceType":"Observation","status":"final",
		"code":{"coding":[{"system":"http://loinc.org","code":"29463-7"}]},"subject":{"reference":"Patient/pat-5"}}`},
}

// filterClause builds a Filter clause as the policy does: parsed, and "key:not" on a
// reference set by hand (the parser refuses it; the stores evaluate it as "no value matches").
func filterClause(t *testing.T, typ, key, value string) search.Clause {
	t.Helper()
	reg, err := searchRegistry()
	if err != nil {
		t.Fatal(err)
	}
	code, refNot := strings.CutSuffix(key, ":ref-not")
	c, err := search.ParseClause(reg, []string{typ}, code, value, search.ParseOptions{BaseURL: "https://fhir.example.org/fhir"})
	if err != nil {
		t.Fatalf("ParseClause(%s=%s): %v", key, value, err)
	}
	if refNot {
		c.Modifier = "not"
	}
	return c
}

// hop is the link n of the first clause's chain (0: the clause itself).
func hop(t *testing.T, q *search.Query, n int) (chain *search.Chain, reverse *search.Reverse) {
	t.Helper()
	c := &q.Clauses[0]
	for i := 0; ; i++ {
		switch {
		case c.Chain != nil && i == n:
			return c.Chain, nil
		case c.Reverse != nil && i == n:
			return nil, c.Reverse
		case c.Chain != nil:
			c = &c.Chain.Clause
		case c.Reverse != nil:
			c = &c.Reverse.Clause
		default:
			t.Fatalf("the query has no link %d", n)
		}
	}
}

const (
	notV   = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V"
	notR   = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"
	notHIV = "http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV"
)

func TestSearchChainFilter(t *testing.T) { forEachDriver(t, testSearchChainFilter) }

func testSearchChainFilter(t *testing.T, driver string) {
	s := loadSearchStore(t, driver)
	ctx := context.Background()
	for _, r := range filterResources {
		if _, _, err := s.Update(ctx, r.typ, r.id, []byte(r.body), backend.UpdateOptions{}); err != nil {
			t.Fatalf("Update %s/%s: %v", r.typ, r.id, err)
		}
	}
	type filter struct {
		hop             int
		typ, key, value string
	}
	tests := []struct {
		name, typ, query string
		filters          []filter
		want             []string
	}{
		{"chain, no filter", "Observation", "patient.name=peter", nil, []string{"obs-1", "obs-2", "obs-6"}},
		{"chain, label filter", "Observation", "patient.name=peter",
			[]filter{{0, "Patient", "_security:not", notV}}, []string{"obs-1", "obs-2"}},
		{"chain, reference :not filter", "Observation", "patient.name=peter",
			[]filter{{0, "Patient", "organization:ref-not", "Organization/org-1"}}, []string{}},
		{"chain, a filter no target passes", "Observation", "patient.name=peter",
			[]filter{{0, "Patient", "_id", "~none~"}}, []string{}},
		{"_has, no filter", "Patient", "_has:Observation:patient:code=http://loinc.org|8480-6", nil, []string{"pat-1", "pat-2", "pat-4"}},
		{"_has, label filter", "Patient", "_has:Observation:patient:code=http://loinc.org|8480-6",
			[]filter{{0, "Observation", "_security:not", notHIV}}, []string{"pat-1", "pat-2"}},
		{"_has, reference :not filter", "Patient", "_has:Observation:patient:code=http://loinc.org|8480-6",
			[]filter{{0, "Observation", "subject:ref-not", "Patient/pat-2,Patient/pat-4"}}, []string{"pat-1"}},
		{"_has, two filters", "Patient", "_has:Observation:patient:code=http://loinc.org|8480-6",
			[]filter{{0, "Observation", "_security:not", notHIV}, {0, "Observation", "patient:ref-not", "Patient/pat-1"}}, []string{"pat-2"}},
		// Nested chains: each link carries its own filter.
		{"nested chain, no filter", "Observation", "patient.organization.name=acme", nil, []string{"obs-1", "obs-2", "obs-6", "obs-7"}},
		{"nested chain, outer filter", "Observation", "patient.organization.name=acme",
			[]filter{{0, "Patient", "_security:not", notV}}, []string{"obs-1", "obs-2", "obs-7"}},
		{"nested chain, inner filter", "Observation", "patient.organization.name=acme",
			[]filter{{1, "Organization", "_security:not", notR}}, []string{"obs-1", "obs-2", "obs-6"}},
		{"nested chain, both filters", "Observation", "patient.organization.name=acme",
			[]filter{{0, "Patient", "_security:not", notV}, {1, "Organization", "_security:not", notR}}, []string{"obs-1", "obs-2"}},
		{"nested _has, no filter", "Organization", "_has:Patient:organization:_has:Observation:patient:code=http://loinc.org|8480-6", nil, []string{"org-1", "org-2"}},
		{"nested _has, both filters", "Organization", "_has:Patient:organization:_has:Observation:patient:code=http://loinc.org|8480-6",
			[]filter{{0, "Patient", "_security:not", notV}, {1, "Observation", "subject:ref-not", "Patient/pat-2"}}, []string{"org-1"}},
		{"nested _has, inner filter hides every path", "Organization", "_has:Patient:organization:_has:Observation:patient:code=http://loinc.org|8480-6",
			[]filter{{1, "Observation", "subject:ref-not", "Patient/pat-1,Patient/pat-2"}, {0, "Patient", "_security:not", notV}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// As the only clause the chain drives the search; beside _id it is an EXISTS probe.
			for _, form := range []string{"drive", "probe"} {
				q := parseSearch(t, tt.typ, tt.query)
				if form == "probe" {
					ids := parseSearch(t, tt.typ, "_id="+allIDs(tt.typ))
					q.Clauses = append(q.Clauses, ids.Clauses...)
				}
				for _, f := range tt.filters {
					c, r := hop(t, q, f.hop)
					fc := filterClause(t, f.typ, f.key, f.value)
					if c != nil {
						c.Filter = append(c.Filter, fc)
					} else {
						r.Filter = append(r.Filter, fc)
					}
				}
				res, err := s.Search(ctx, q)
				if err != nil {
					t.Fatalf("%s: Search: %v", form, err)
				}
				got := resultIDs(res.Matches)
				slices.Sort(got)
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s: %s?%s with %v = %v, want %v", form, tt.typ, tt.query, tt.filters, got, tt.want)
				}
			}
		})
	}
}

// allIDs lists every id of typ in the search fixtures.
func allIDs(typ string) string {
	var ids []string
	for _, r := range searchResources {
		if r.typ == typ {
			ids = append(ids, r.id)
		}
	}
	for _, r := range filterResources {
		if r.typ == typ {
			ids = append(ids, r.id)
		}
	}
	return strings.Join(ids, ",")
}
