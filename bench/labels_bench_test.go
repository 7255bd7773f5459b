package bench

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// benchConsents serves one patient's Consent (deny HIV-labelled data) to the engine.
type benchConsents struct {
	patient string
	body    []byte
}

func (c benchConsents) PatientConsents(_ context.Context, p string) ([][]byte, error) {
	if p == c.patient {
		return [][]byte{c.body}, nil
	}
	return nil, nil
}

func (c benchConsents) ConsentPatients(context.Context, int) ([]string, error) {
	return []string{c.patient}, nil
}

// BenchmarkLabelConsentFiltering measures what security-label clearance and Consent add to a
// practitioner's search of one patient's Observations, over the SQLite bench store: decide,
// narrow the query, run it, check every match with the response filter. The three variants
// run interleaved in each iteration (same cache and machine state) and are reported as
// ratios to the plain scope check:
//
//   - plain: scopes only (no label policy, no Consent source);
//   - labels: default clearance N, so the search carries a _security:not clause over the
//     confidentiality and sensitivity codes above it, and every match is label-checked;
//   - labels+consent: plus the patient's Consent (deny HIV-labelled data), compiled into one
//     more clause and re-checked per match.
func BenchmarkLabelConsentFiltering(b *testing.B) {
	s, n := openBenchStore(b)
	matcher, err := search.NewMatcher(registry)
	if err != nil {
		b.Fatal(err)
	}
	membership, err := compartment.NewMembership(registry, nil)
	if err != nil {
		b.Fatal(err)
	}
	pid := patientID(n / 2)
	consent := []byte(`{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"patient":{"reference":"Patient/` + pid + `"},"provision":{"type":"permit","provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}]}}`)
	labels := &policy.LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}
	mk := func(lp *policy.LabelPolicy, cs policy.ConsentSource) *policy.Engine {
		e, err := policy.New(policy.Config{Registry: registry, Matcher: matcher, Membership: membership, BaseURL: enforcementBase, Labels: lp, Consents: cs})
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	variants := []struct {
		name string
		e    *policy.Engine
	}{
		{"plain", mk(nil, nil)},
		{"labels", mk(labels, nil)},
		{"labels+consent", mk(labels, benchConsents{pid, consent})},
	}
	scopes, _ := smart.ParseScopes("user/*.rs")
	p := &authn.Principal{Subject: "bench", ClientID: "bench", JTI: "j", FHIRUser: "Practitioner/bench", Scopes: scopes}
	ctx := context.Background()
	run := func(e *policy.Engine) int {
		q, _, err := search.Parse(registry, []string{"Observation"}, url.Values{"patient": {"Patient/" + pid}, "_count": {"100"}}, search.ParseOptions{DefaultCount: 100, MaxCount: 100})
		if err != nil {
			b.Fatal(err)
		}
		d, err := e.Evaluate(ctx, policy.Input{Principal: p, Interaction: policy.SearchType, Type: "Observation", Query: q})
		if err != nil || !d.Allow {
			b.Fatalf("%+v %v", d, err)
		}
		if err := d.Narrowing.Narrow(q); err != nil {
			b.Fatal(err)
		}
		res, err := s.Search(ctx, q)
		if err != nil {
			b.Fatal(err)
		}
		kept := 0
		for _, m := range res.Matches {
			if ok, _ := d.Filter.Check(m.Type, m.Body); ok {
				kept++
			}
		}
		return kept
	}
	want := run(variants[0].e)
	for _, v := range variants[1:] {
		if got := run(v.e); got != want {
			b.Fatalf("%s keeps %d matches, plain %d (the bench data has no labels)", v.name, got, want)
		}
	}
	spent := make([]time.Duration, len(variants))
	b.ResetTimer()
	for b.Loop() {
		for i, v := range variants {
			start := time.Now()
			run(v.e)
			spent[i] += time.Since(start)
		}
	}
	b.StopTimer()
	for i, v := range variants {
		b.ReportMetric(float64(spent[i].Nanoseconds())/float64(b.N), v.name+"-ns/op")
		if i > 0 {
			b.ReportMetric(float64(spent[i])/float64(spent[0]), v.name+"/plain")
		}
	}
}
