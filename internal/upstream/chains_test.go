package upstream_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

const restricted = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"

var chainParse = search.ParseOptions{DefaultCount: 20, MaxCount: 1000, Strict: true, BaseURL: "http://proxy.example/fhir"}

// recorder sits between the backend and the upstream: it records the path and query of every
// request and may rewrite them first, as an upstream that ignores a parameter or pages small.
type recorder struct {
	mu      sync.Mutex
	seen    []string
	rewrite func(q url.Values)
}

func (rc *recorder) requests() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.seen)
}

func (rc *recorder) setRewrite(f func(url.Values)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.rewrite = f
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.seen = nil
}

// recordedFHIR is plainFHIR behind a recorder; it returns the recorder's FHIR base.
func recordedFHIR(t *testing.T) (string, *recorder) {
	t.Helper()
	target, _ := url.Parse(strings.TrimSuffix(plainFHIR(t), "/fhir"))
	rc := &recorder{}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rc.mu.Lock()
		if rc.rewrite != nil {
			rc.rewrite(q)
			r.URL.RawQuery = q.Encode()
		}
		rc.seen = append(rc.seen, r.URL.Path+"?"+r.URL.RawQuery)
		rc.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/fhir", rc
}

func labelClause(t *testing.T, reg *search.Registry, typ string) search.Clause {
	t.Helper()
	c, err := search.ParseClause(reg, []string{typ}, "_security:not", restricted, chainParse)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// filtered parses raw as a search of typ and sets the Filter of every chain and _has as the
// policy does: the targets must not carry the R label.
func filtered(t *testing.T, reg *search.Registry, typ, raw string, count int) *search.Query {
	t.Helper()
	v, _ := url.ParseQuery(raw)
	q, _, err := search.Parse(reg, []string{typ}, v, chainParse)
	if err != nil {
		t.Fatal(err)
	}
	for i := range q.Clauses {
		c := &q.Clauses[i]
		switch {
		case c.Chain != nil:
			ch := *c.Chain
			ch.Filter = []search.Clause{labelClause(t, reg, ch.Type)}
			c.Chain = &ch
		case c.Reverse != nil:
			rv := *c.Reverse
			rv.Filter = []search.Clause{labelClause(t, reg, rv.Type)}
			c.Reverse = &rv
		}
	}
	q.Count, q.Total = count, search.TotalAccurate
	return q
}

// searchAllPages runs q and every page after it, returning the matches' ids and the first
// page's total.
func searchAllPages(t *testing.T, b *upstream.Backend, q *search.Query) ([]string, *int, error) {
	t.Helper()
	var ids []string
	var total *int
	for page := 0; ; page++ {
		res, err := b.Search(context.Background(), q)
		if err != nil {
			return nil, nil, err
		}
		if page == 0 {
			total = res.Total
		}
		for _, m := range res.Matches {
			ids = append(ids, m.ID)
		}
		if res.Next == "" || page > 50 {
			slices.Sort(ids)
			return ids, total, nil
		}
		next := *q
		next.Cursor = res.Next
		q = &next
	}
}

// Chains and _has narrowed on their targets (Filter) are resolved in two steps against the
// upstream: the filtered-out targets never count, even when the upstream ignores the filter;
// a link without a match answers nothing without sending the outer search; pages follow.
func TestFilteredChains(t *testing.T) {
	ctx := context.Background()
	base, rec := recordedFHIR(t)
	b := newBackend(t, base, nil)
	reg := mustRegistryT(t)
	create := func(typ, body string) string {
		t.Helper()
		res, _, err := b.Create(ctx, typ, []byte(body), backend.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.ID
	}
	sec := `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},`
	smith := create("Patient", `{"resourceType":"Patient","name":[{"family":"Smith"}]}`)
	hidden := create("Patient", `{"resourceType":"Patient",`+sec+`"name":[{"family":"Smith"}]}`)
	jones := create("Patient", `{"resourceType":"Patient","name":[{"family":"Jones"}]}`)
	// lone's only Observation is labelled: a _has must not find lone.
	lone := create("Patient", `{"resourceType":"Patient","name":[{"family":"Lone"}]}`)
	create("Observation", `{"resourceType":"Observation",`+sec+`"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"subject":{"reference":"Patient/`+lone+`"}}`)
	obs := map[string]string{}
	for _, p := range []string{smith, hidden, jones} {
		for i, label := range []string{"", sec} {
			obs[fmt.Sprintf("%s-%d", p, i)] = create("Observation", `{"resourceType":"Observation",`+label+`"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"subject":{"reference":"Patient/`+p+`"}}`)
		}
	}
	// Every Observation of a patient named Smith that may be seen: the chain reaches only the
	// unlabelled Smith (the outer search is not narrowed here).
	smithObs := []string{obs[smith+"-0"], obs[smith+"-1"]}
	slices.Sort(smithObs)
	// The patients with an unlabelled Observation: all three.
	withObs := []string{smith, hidden, jones}
	slices.Sort(withObs)

	for _, tc := range []struct {
		name    string
		typ     string
		raw     string
		count   int
		rewrite func(url.Values)
		want    []string
		// minRequests is the least number of upstream requests (a resolution that pages).
		minRequests int
	}{
		{name: "chain", typ: "Observation", raw: "subject:Patient.family=Smith", count: 20, want: smithObs},
		{name: "chain, paged by one", typ: "Observation", raw: "subject:Patient.family=Smith", count: 1, want: smithObs},
		{name: "chain, upstream ignores the filter and pages by one", typ: "Observation", raw: "subject:Patient.family=Smith", count: 20,
			rewrite: func(q url.Values) {
				q.Del("_security:not")
				if q.Get("_count") == "500" {
					q.Set("_count", "1")
				}
			}, want: smithObs, minRequests: 3},
		{name: "_has", typ: "Patient", raw: "_has:Observation:subject:code=4548-4", count: 2, want: withObs},
		{name: "_has, upstream ignores the filter", typ: "Patient", raw: "_has:Observation:subject:code=4548-4", count: 20,
			rewrite: func(q url.Values) { q.Del("_security:not") }, want: withObs},
		{name: "_has, upstream pages by one", typ: "Patient", raw: "_has:Observation:subject:code=4548-4", count: 20,
			rewrite: func(q url.Values) {
				if q.Get("_count") == "500" {
					q.Set("_count", "1")
				}
			}, want: withObs, minRequests: 3},
		{name: "_has and other clauses", typ: "Patient", raw: "_has:Observation:subject:code=4548-4&family=Smith&_id=" + hidden, count: 20,
			want: []string{hidden}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.reset()
			rec.setRewrite(tc.rewrite)
			t.Cleanup(func() { rec.setRewrite(nil) })
			got, total, err := searchAllPages(t, b, filtered(t, reg, tc.typ, tc.raw, tc.count))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, slices.Sorted(slices.Values(tc.want))) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if total == nil || *total != len(tc.want) {
				t.Errorf("total %v, want %d", total, len(tc.want))
			}
			if n := len(rec.requests()); n < tc.minRequests {
				t.Errorf("%d upstream requests, want at least %d: the resolution did not follow the next links", n, tc.minRequests)
			}
		})
	}

	t.Run("no target: nothing, without the outer search", func(t *testing.T) {
		rec.reset()
		for _, raw := range []string{"subject:Patient.family=Nobody", "subject:Patient.family=Smith&subject:Patient._id=" + hidden} {
			res, err := b.Search(ctx, filtered(t, reg, "Observation", raw, 20))
			if err != nil || len(res.Matches) != 0 || res.Total == nil || *res.Total != 0 || res.Next != "" {
				t.Fatalf("%s: %+v, %v", raw, res, err)
			}
		}
		for _, r := range rec.requests() {
			if strings.Contains(r, "/Observation") {
				t.Errorf("the outer search was sent: %s", r)
			}
		}
	})

	t.Run("the resolved link is what reaches the upstream", func(t *testing.T) {
		rec.reset()
		if _, err := b.Search(ctx, filtered(t, reg, "Observation", "subject:Patient.family=Smith", 20)); err != nil {
			t.Fatal(err)
		}
		var outer []string
		for _, r := range rec.requests() {
			if strings.Contains(r, "/Observation") {
				outer = append(outer, r)
			}
		}
		want := url.Values{"subject": {"Patient/" + smith}}.Encode()
		if len(outer) != 1 || !strings.Contains(outer[0], want) || strings.Contains(outer[0], "family") {
			t.Errorf("outer searches %v, want one with %s", outer, want)
		}
	})
}

func mustRegistryT(t *testing.T) *search.Registry {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// An upstream that answers a link's search with more than MaxChainIDs targets gets a 400
// too-costly, never a partial answer, and the outer search is not sent; a link answered with
// another type is a 502.
func TestFilteredChainLimits(t *testing.T) {
	reg := mustRegistryT(t)
	for _, tc := range []struct {
		name, typ, raw, linkType string
		// entry is the JSON of the i-th target of the link, of resource type rt.
		entry func(rt string, i int64) string
	}{
		{name: "chain", typ: "Observation", raw: "subject:Patient.family=Smith", linkType: "Patient",
			entry: func(rt string, i int64) string {
				return fmt.Sprintf(`{"resourceType":%q,"id":"p%d","name":[{"family":"Smith"}]}`, rt, i)
			}},
		{name: "_has", typ: "Patient", raw: "_has:Observation:subject:code=4548-4", linkType: "Observation",
			entry: func(rt string, i int64) string {
				return fmt.Sprintf(`{"resourceType":%q,"id":"o%d","status":"final","code":{"coding":[{"code":"4548-4"}]},"subject":{"reference":"Patient/p%d"}}`, rt, i, i)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var outer, targets atomic.Int64
			var rt atomic.Value
			targets.Store(upstream.MaxChainIDs + 1)
			rt.Store(tc.linkType)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasSuffix(r.URL.Path, "/"+tc.linkType) {
					outer.Add(1)
					_, _ = fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","entry":[]}`)
					return
				}
				var sb strings.Builder
				sb.WriteString(`{"resourceType":"Bundle","type":"searchset","entry":[`)
				for i := range targets.Load() {
					if i > 0 {
						sb.WriteByte(',')
					}
					fmt.Fprintf(&sb, `{"resource":%s,"search":{"mode":"match"}}`, tc.entry(rt.Load().(string), i))
				}
				sb.WriteString(`]}`)
				_, _ = fmt.Fprint(w, sb.String())
			}))
			t.Cleanup(srv.Close)
			b := newBackend(t, srv.URL+"/fhir", nil)
			q := func() *search.Query { return filtered(t, reg, tc.typ, tc.raw, 20) }

			_, err := b.Search(context.Background(), q())
			_, oo := fhir.OutcomeFromError(err)
			if statusOf(err) != http.StatusBadRequest || len(oo.Issue) == 0 || oo.Issue[0].Code != "too-costly" || !strings.Contains(oo.Issue[0].Diagnostics, "1000") {
				t.Errorf("over the cap: %v (%+v)", err, oo)
			}
			targets.Store(upstream.MaxChainIDs)
			if _, err := b.Search(context.Background(), q()); err != nil {
				t.Errorf("at the cap: %v", err)
			}
			rt.Store("Organization")
			if _, err := b.Search(context.Background(), q()); statusOf(err) != http.StatusBadGateway {
				t.Errorf("another type: %v", err)
			}
			if n := outer.Load(); n != 1 {
				t.Errorf("the outer search was sent %d times, want once (at the cap)", n)
			}
		})
	}
}
