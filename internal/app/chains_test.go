package app_test

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demo"
)

const hivCode = "http://snomed.info/sct|86406008"

// refsOf collects the references ("Type/id") of a resource element: a Reference, a list of
// them, or a list of objects holding one under actor.
func refsOf(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			out = append(out, refsOf(e)...)
		}
	case map[string]any:
		if r, ok := x["reference"].(string); ok {
			out = append(out, r)
		}
		if a, ok := x["actor"]; ok {
			out = append(out, refsOf(a)...)
		}
	}
	return out
}

func keySet(m map[string]map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// TestChainsDoNotProbeHiddenResources: a chain or _has evaluates its inner clause on other
// resources than those returned; those targets are narrowed like a search of their type, so
// the matches of a chain are exactly what the caller could work out from the targets it may
// see. Each probe's expectation is computed from plain searches with the same token: which
// patients have an HIV Condition (labelled R and HIV), which Provenances point at one, which
// organisations reported on Bob (whose Consent keeps drnovak out), and Alice's reports that
// share an organisation with Bob's.
func TestChainsDoNotProbeHiddenResources(t *testing.T) {
	s := newServerWith(t, nil)
	alice, bob := "Patient/"+demo.AlicePatientID, "Patient/"+demo.BobPatientID
	smith, _, _ := s.browser().userToken("drsmith", "smith-demo-password", "openid fhirUser user/*.rs", nil)
	novak, _, _ := s.browser().userToken("drnovak", "novak-demo-password", "openid fhirUser user/*.rs", nil)
	btg, _, _ := s.browser().userToken("drsmith", "smith-demo-password", "openid fhirUser user/*.rs",
		url.Values{"purpose_of_use": {"BTG"}, "break_glass_reason": {"chain probe test"}})
	if smith == "" || novak == "" || btg == "" {
		t.Fatal("tokens")
	}
	users := map[string]string{"system": s.system, "drsmith": smith, "drnovak": novak, "drsmith break-glass": btg}

	// visible is what a plain search with tok returns (every page), failing the test unless 200.
	visible := func(path, tok string) map[string]map[string]any {
		t.Helper()
		m, _, _, _, st := s.searchAll(path, tok)
		if st != 200 {
			t.Fatalf("%s: %d", path, st)
		}
		return m
	}
	// hivPatients are the subjects of the HIV Conditions tok may see.
	hivConditions := func(tok string) map[string]map[string]any {
		return visible("/Condition?code="+url.QueryEscape(hivCode)+"&_count=100", tok)
	}
	// reportOrgs are the performers of Bob's DiagnosticReports that tok may see.
	reportOrgs := func(tok string) map[string]bool {
		out := map[string]bool{}
		for _, r := range visible("/DiagnosticReport?patient="+bob+"&_count=100", tok) {
			for _, ref := range refsOf(r["performer"]) {
				out[ref] = true
			}
		}
		return out
	}
	allProvenances := visible("/Provenance?target:Condition.code="+url.QueryEscape(hivCode)+"&_count=100", s.system)

	probes := []struct {
		name, path string
		users      []string
		want       func(tok string) map[string]bool
		// empty and found: users whose expectation must be empty / not empty, so that the
		// probe tells a narrowed chain from an unnarrowed one.
		empty, found []string
	}{
		{
			name: "_has through labelled Conditions", path: "/Patient?_has:Condition:patient:code=" + url.QueryEscape(hivCode) + "&_total=accurate&_count=7",
			users: []string{"system", "drsmith", "drsmith break-glass"},
			want: func(tok string) map[string]bool {
				out := map[string]bool{}
				for _, c := range hivConditions(tok) {
					out[strOf(c["subject"].(map[string]any)["reference"])] = true
				}
				return out
			},
			empty: []string{"drsmith"}, found: []string{"system", "drsmith break-glass"},
		},
		{
			name: "forward chain through labelled Conditions", path: "/Provenance?target:Condition.code=" + url.QueryEscape(hivCode) + "&_total=accurate&_count=7",
			users: []string{"system", "drsmith", "drnovak", "drsmith break-glass"},
			want: func(tok string) map[string]bool {
				seen := hivConditions(tok)
				out := map[string]bool{}
				for k, p := range allProvenances {
					if r := s.do("GET", "/"+k, tok, "", ""); r.status != 200 {
						continue
					}
					for _, ref := range refsOf(p["target"]) {
						if seen[ref] != nil {
							out[k] = true
						}
					}
				}
				return out
			},
			empty: []string{"drsmith", "drnovak"}, found: []string{"system", "drsmith break-glass"},
		},
		{
			name: "_has through a Consent-denied patient's reports", path: "/Organization?_has:DiagnosticReport:performer:patient=" + bob + "&_total=accurate",
			users: []string{"system", "drsmith", "drnovak"},
			want:  reportOrgs,
			empty: []string{"drnovak"}, found: []string{"system", "drsmith"},
		},
		{
			name: "chain then _has out of a search bounded to Alice", path: "/DiagnosticReport?patient=" + alice +
				"&performer:Organization._has:DiagnosticReport:performer:patient=" + bob + "&_total=accurate&_count=5",
			users: []string{"system", "drsmith", "drnovak"},
			want: func(tok string) map[string]bool {
				orgs := reportOrgs(tok)
				out := map[string]bool{}
				for k, r := range visible("/DiagnosticReport?patient="+alice+"&_count=100", tok) {
					for _, ref := range refsOf(r["performer"]) {
						if orgs[ref] {
							out[k] = true
						}
					}
				}
				return out
			},
			empty: []string{"drnovak"}, found: []string{"system", "drsmith"},
		},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			wants := map[string]map[string]bool{}
			for _, u := range p.users {
				tok := users[u]
				want := p.want(tok)
				wants[u] = want
				got, _, total, _, st := s.searchAll(p.path, tok)
				if st != 200 {
					t.Fatalf("%s: %s = %d", u, p.path, st)
				}
				if g := keySet(got); !maps.Equal(g, want) || total != len(want) {
					t.Errorf("%s: %s found %v (total %d), want %v", u, p.path, slices.Sorted(maps.Keys(g)), total, slices.Sorted(maps.Keys(want)))
				}
			}
			for _, u := range p.empty {
				if len(wants[u]) != 0 {
					t.Errorf("%s should see no target of %s: %v", u, p.path, wants[u])
				}
			}
			for _, u := range p.found {
				if len(wants[u]) == 0 {
					t.Errorf("%s should see targets of %s (the probe would test nothing)", u, p.path)
				}
			}
		})
	}

	t.Run("a chain into Patient across a Consent is refused", func(t *testing.T) {
		path := "/Observation?subject:Patient.family=Okafor&_total=accurate"
		r := s.do("GET", path, novak, "", "")
		if r.status != 403 || !strings.Contains(r.raw, "OperationOutcome") || strings.Contains(r.raw, `"entry"`) {
			t.Errorf("drnovak %s = %d %.300s", path, r.status, r.raw)
		}
		got, _, total, _, st := s.searchAll(path, smith)
		if st != 200 || len(got) == 0 || total != len(got) {
			t.Errorf("drsmith %s = %d, %d matches, total %d", path, st, len(got), total)
		}
	})
}

// TestChainsThroughProxy: in proxy mode a chain the policy narrows on its targets is resolved
// in two steps (the targets searched upstream with the narrowing, re-checked, then the chain
// replaced by their ids): through the proxy each caller finds exactly what it finds on the
// store, totals included, never a hidden target; and an upstream that ignores the narrowing of
// the targets changes nothing, as the proxy re-checks them.
func TestChainsThroughProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three servers with 20 demo patients")
	}
	var chained, stripped atomic.Int64 // upstream searches that carry a chain or _has; labels dropped
	var ignoreLabels atomic.Bool
	up := startPlainUpstreamWith(t, func(r *http.Request) {
		if q, _ := url.QueryUnescape(r.URL.RawQuery); strings.Contains(q, "_has:") || strings.Contains(q, "target:Condition") {
			chained.Add(1)
		}
		// The probes carry _total, the searches of their targets do not: only the latter ignore
		// the labels (a proxied search that ignores them loses its total, TestProxyLyingUpstream).
		if q := r.URL.Query(); ignoreLabels.Load() && q.Has("_security:not") && !q.Has("_total") {
			stripped.Add(1)
			q.Del("_security:not")
			r.URL.RawQuery = q.Encode()
		}
	})
	proxy := startIsolationServer(t, func(c *config.Config) {
		c.Upstream.URL = up.url
		c.Upstream.Timeout = 20 * time.Second
		c.Upstream.TrustTotals = true
	})
	direct := newServerWith(t, nil)
	alice, bob := "Patient/"+demo.AlicePatientID, "Patient/"+demo.BobPatientID
	tokens := func(s *server) map[string]string {
		smith, _, _ := s.browser().userToken("drsmith", "smith-demo-password", "openid fhirUser user/*.rs", nil)
		novak, _, _ := s.browser().userToken("drnovak", "novak-demo-password", "openid fhirUser user/*.rs", nil)
		if smith == "" || novak == "" {
			t.Fatal("tokens")
		}
		return map[string]string{"system": s.system, "drsmith": smith, "drnovak": novak}
	}
	proxyTok, directTok := tokens(proxy), tokens(direct)
	hiv := url.QueryEscape(hivCode)
	for _, tc := range []struct {
		path string
		// empty: users who must find nothing (the targets are hidden from them); found: users
		// who must find something (the probe tests a chain that matches).
		empty, found []string
	}{
		{path: "/Patient?_has:Condition:patient:code=" + hiv + "&_total=accurate&_count=7", empty: []string{"drsmith"}, found: []string{"system"}},
		{path: "/Provenance?target:Condition.code=" + hiv + "&_total=accurate&_count=7", empty: []string{"drsmith", "drnovak"}, found: []string{"system"}},
		{path: "/Organization?_has:DiagnosticReport:performer:patient=" + bob + "&_total=accurate", empty: []string{"drnovak"}, found: []string{"system", "drsmith"}},
		{path: "/DiagnosticReport?patient=" + alice + "&performer:Organization._has:DiagnosticReport:performer:patient=" + bob + "&_total=accurate&_count=5",
			empty: []string{"drnovak"}, found: []string{"system", "drsmith"}},
		{path: "/Observation?subject:Patient.family=Okafor&_total=accurate&_count=50", found: []string{"system", "drsmith"}},
	} {
		for _, ignore := range []bool{false, true} {
			ignoreLabels.Store(ignore)
			for _, u := range []string{"system", "drsmith", "drnovak"} {
				want, _, wantTotal, _, wantSt := direct.searchAll(tc.path, directTok[u])
				before := chained.Load()
				got, _, total, _, st := proxy.searchAll(tc.path, proxyTok[u])
				if st != 200 {
					r := proxy.do("GET", tc.path, proxyTok[u], "", "")
					t.Logf("%s %s: %.400s", u, tc.path, r.raw)
				}
				if st != wantSt || !maps.Equal(keySet(got), keySet(want)) || total != wantTotal {
					t.Errorf("ignoring labels %v: %s %s through the proxy = %d %v (total %d), on the store %d %v (total %d)", ignore, u, tc.path,
						st, slices.Sorted(maps.Keys(got)), total, wantSt, slices.Sorted(maps.Keys(want)), wantTotal)
				}
				if slices.Contains(tc.empty, u) && (wantSt != 200 || len(want) != 0) {
					t.Errorf("%s %s on the store = %d %d matches, want none", u, tc.path, wantSt, len(want))
				}
				if slices.Contains(tc.found, u) && (wantSt != 200 || len(want) == 0) {
					t.Errorf("%s %s on the store = %d, no match (the probe tests nothing)", u, tc.path, wantSt)
				}
				if u != "system" && chained.Load() != before {
					t.Errorf("%s %s: a chain narrowed on its targets reached the upstream unresolved", u, tc.path)
				}
			}
		}
	}
	if stripped.Load() == 0 {
		t.Error("the upstream ignoring the targets' labels was never exercised")
	}
	// A search across patients that a patient's Consent narrows (Bob's keeps drnovak out) carries
	// a reference :not clause, which is not R4 syntax: the proxy applies it to the upstream's
	// answer, page by page, and finds what the store finds.
	ignoreLabels.Store(false)
	for _, path := range []string{"/Condition?_count=7", "/Observation?category=laboratory&_count=40"} {
		want, _, _, _, wantSt := direct.searchAll(path, directTok["drnovak"])
		got, _, _, _, st := proxy.searchAll(path, proxyTok["drnovak"])
		if wantSt != 200 || st != 200 || !maps.Equal(keySet(got), keySet(want)) {
			t.Errorf("drnovak %s through the proxy = %d %d matches, on the store %d %d", path, st, len(got), wantSt, len(want))
		}
		for k, res := range got {
			if subj, _ := res["subject"].(map[string]any); strOf(subj["reference"]) == bob {
				t.Errorf("drnovak %s through the proxy returned Bob's %s", path, k)
			}
		}
	}
	if r := proxy.do("GET", "/Condition?_summary=count", proxyTok["drnovak"], "", ""); r.status != 400 {
		t.Errorf("a count across Consent-restricted patients through the proxy = %d, want 400", r.status)
	}
}
