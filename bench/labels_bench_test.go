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
	pid := patientID(n / 2)
	consent := []byte(`{"resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"patient":{"reference":"Patient/` + pid + `"},"provision":{"type":"permit","provision":[{"type":"deny","securityLabel":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}]}}`)
	labels := &policy.LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}
	mk := func(lp *policy.LabelPolicy, cs policy.ConsentSource) *policy.Engine {
		return labelEngine(b, registry, lp, cs)
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

// BenchmarkRedaction measures what redaction adds to releasing one search match: the response
// filter on a typical lab Observation (value, interpretation, reference range, narrative) for a
// clinician cleared for N, interleaved in each iteration and reported as ratios to the first:
//
//   - whole: an unlabelled Observation, released as is (the label check only);
//   - hidden: the same labelled HIV, refused (no redaction configured);
//   - redacted: labelled HIV with policy.labels.redact removing value[x], interpretation, note
//     and component (plus the narrative): parsed, rewritten and tagged SUBSETTED.
func BenchmarkRedaction(b *testing.B) {
	registry, err := search.DefaultRegistry()
	if err != nil {
		b.Fatal(err)
	}
	redact := []policy.Redaction{{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"value[x]", "interpretation", "note", "component"}}}}
	mk := func(lp *policy.LabelPolicy) *policy.ResponseFilter {
		e := labelEngine(b, registry, lp, nil)
		scopes, _ := smart.ParseScopes("user/*.rs")
		p := &authn.Principal{Subject: "bench", ClientID: "bench", JTI: "j", FHIRUser: "Practitioner/bench", Scopes: scopes,
			Clearance: &authn.Clearance{Confidentiality: "N"}}
		d, err := e.Evaluate(context.Background(), policy.Input{Principal: p, Interaction: policy.SearchType, Type: "Observation", Query: &search.Query{Types: []string{"Observation"}}})
		if err != nil || !d.Allow {
			b.Fatalf("%+v %v", d, err)
		}
		return d.Filter
	}
	obs := func(meta string) []byte {
		return []byte(`{"resourceType":"Observation","id":"o1",` + meta + `"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">HIV 1 RNA 1200 copies/mL (high)</div>"},` +
			`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"20447-9","display":"HIV 1 RNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection"}]},` +
			`"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-03-01T10:00:00Z","issued":"2024-03-01T14:00:00Z",` +
			`"valueQuantity":{"value":1200,"unit":"copies/mL","system":"http://unitsofmeasure.org","code":"{copies}/mL"},` +
			`"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"H"}]}],` +
			`"referenceRange":[{"high":{"value":20,"unit":"copies/mL"}}],"note":[{"text":"repeat in 3 months"}]}`)
	}
	plain, hiv := obs(""), obs(`"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},`)
	labels := &policy.LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}
	variants := []struct {
		name   string
		f      *policy.ResponseFilter
		body   []byte
		expect string // whole, hidden or redacted
	}{
		{"whole", mk(labels), plain, "whole"},
		{"hidden", mk(labels), hiv, "hidden"},
		{"redacted", mk(&policy.LabelPolicy{Default: labels.Default, Redact: redact}), hiv, "redacted"},
	}
	for _, v := range variants {
		out, red, why := v.f.Release("Observation", v.body)
		got := map[bool]string{true: "redacted", false: "whole"}[red]
		if why != "" {
			got = "hidden"
		}
		if got != v.expect || (red && len(out) >= len(v.body)) {
			b.Fatalf("%s: released %s", v.name, got)
		}
	}
	spent := make([]time.Duration, len(variants))
	b.ResetTimer()
	for b.Loop() {
		for i, v := range variants {
			start := time.Now()
			v.f.Release("Observation", v.body)
			spent[i] += time.Since(start)
		}
	}
	b.StopTimer()
	for i, v := range variants {
		b.ReportMetric(float64(spent[i].Nanoseconds())/float64(b.N), v.name+"-ns/op")
		if i > 0 {
			b.ReportMetric(float64(spent[i])/float64(spent[0]), v.name+"/whole")
		}
	}
}

// BenchmarkChainLabelFiltering measures what security labels add to chained searches, whose
// links are narrowed on their targets too (search.Chain.Filter / Reverse.Filter: one
// _security:not clause per link): a practitioner's forward chain (Observation by the patient's
// identifier and a code) and reverse chain (the patient that has such an Observation), each
// without a label policy (plain) and with the default clearance N (labels), interleaved in each
// iteration over the SQLite bench store and reported as ratios to plain.
func BenchmarkChainLabelFiltering(b *testing.B) {
	s, n := openBenchStore(b)
	plain, labels := labelEngine(b, registry, nil, nil), labelEngine(b, registry, &policy.LabelPolicy{Default: authn.Clearance{Confidentiality: "N"}}, nil)
	pid := patientID(n / 2)
	queries := []struct {
		name, typ string
		params    url.Values
	}{
		{"chain", "Observation", url.Values{"subject:Patient.identifier": {"urn:bench:mrn|MRN" + pid[3:]}, "code": {"http://loinc.org|4548-4"}}},
		{"has", "Patient", url.Values{"_id": {pid}, "_has:Observation:patient:code": {"http://loinc.org|4548-4"}}},
	}
	scopes, _ := smart.ParseScopes("user/*.rs")
	p := &authn.Principal{Subject: "bench", ClientID: "bench", JTI: "j", FHIRUser: "Practitioner/bench", Scopes: scopes}
	ctx := context.Background()
	run := func(e *policy.Engine, typ string, params url.Values) int {
		q, _, err := search.Parse(registry, []string{typ}, params, search.ParseOptions{DefaultCount: 100, MaxCount: 100})
		if err != nil {
			b.Fatal(err)
		}
		d, err := e.Evaluate(ctx, policy.Input{Principal: p, Interaction: policy.SearchType, Type: typ, Query: q})
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
		return len(res.Matches)
	}
	for _, q := range queries {
		if got, want := run(labels, q.typ, q.params), run(plain, q.typ, q.params); got != want || want == 0 {
			b.Fatalf("%s: labels keep %d matches, plain %d (the bench data has no labels)", q.name, got, want)
		}
	}
	spent := make([]time.Duration, 2*len(queries))
	b.ResetTimer()
	for b.Loop() {
		for i, q := range queries {
			for j, e := range []*policy.Engine{plain, labels} {
				start := time.Now()
				run(e, q.typ, q.params)
				spent[2*i+j] += time.Since(start)
			}
		}
	}
	b.StopTimer()
	for i, q := range queries {
		b.ReportMetric(float64(spent[2*i].Nanoseconds())/float64(b.N), q.name+"-plain-ns/op")
		b.ReportMetric(float64(spent[2*i+1])/float64(spent[2*i]), q.name+"-labels/plain")
	}
}

// labelEngine is a policy engine over reg enforcing lp (nil: no labels) and the Consents of cs.
func labelEngine(b *testing.B, reg *search.Registry, lp *policy.LabelPolicy, cs policy.ConsentSource) *policy.Engine {
	b.Helper()
	matcher, err := search.NewMatcher(reg)
	if err != nil {
		b.Fatal(err)
	}
	membership, err := compartment.NewMembership(reg, nil)
	if err != nil {
		b.Fatal(err)
	}
	e, err := policy.New(policy.Config{Registry: reg, Matcher: matcher, Membership: membership, BaseURL: enforcementBase, Labels: lp, Consents: cs})
	if err != nil {
		b.Fatal(err)
	}
	return e
}
