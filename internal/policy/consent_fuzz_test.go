package policy

import (
	"context"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// FuzzParseConsent: any Consent body parses or fails without panicking, and whatever the
// engine accepts compiles into rules (or fails closed) for a read and a search.
func FuzzParseConsent(f *testing.F) {
	f.Add(consentOf(`{"type":"deny"}`))
	f.Add(consentOf(`{"type":"permit","provision":[{"type":"deny","securityLabel":[` + labelHIV + `],"dataPeriod":{"start":"2020","end":"2021-02-03T04:05:06Z"}}]}`))
	f.Add(consentOf(`{"type":"deny","provision":[{"type":"permit","class":[` + classObs + `],"actor":[` + actorApp + `],"purpose":[{"code":"TREAT"}]}]}`))
	f.Add(`{"resourceType":"Consent","status":"active"}`)
	e, err := New(Config{Registry: testRegistry(f), Matcher: realMatcher(f), Membership: realMembership(f)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if _, _, err := ParseConsent([]byte(body), "p1"); err != nil {
			return
		}
		e.consents = consents{by: map[string][]string{"p1": {body}}}
		ctx := context.Background()
		p := principal("user/*.rs", "", "Practitioner/d1")
		_, _ = e.Evaluate(ctx, Input{Principal: p, Interaction: Read, Type: "Observation", ID: "o1", Resource: obsAt("o1", "2024-01-01T00:00:00Z")})
		pc, err := search.ParseClause(e.reg, []string{"Observation"}, "patient", "Patient/p1", search.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := e.Evaluate(ctx, Input{Principal: p, Interaction: SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}, Clauses: []search.Clause{pc}}})
		if d.Allow {
			q := &search.Query{Types: []string{"Observation"}, Clauses: []search.Clause{pc}}
			if err := d.Narrowing.Narrow(q); err != nil {
				t.Fatalf("an allowed search does not narrow: %v", err)
			}
		}
	})
}
