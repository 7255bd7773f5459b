package app_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demo"
)

func subsetted(res map[string]any) bool {
	meta, _ := res["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for _, t := range tags {
		if m, _ := t.(map[string]any); m["code"] == "SUBSETTED" {
			return true
		}
	}
	return false
}

// TestRedaction: with R and HIV marked to redact, a clinician cleared for N gets the demo's HIV
// records (labelled R and HIV) redacted, not hidden, on every way out (search with exact totals
// and pages, read, _revinclude, history, Bundle, $everything, _summary), while PSY records stay
// hidden; searching on a removed element finds nothing redacted; and nothing seen redacted can
// be changed.
func TestRedaction(t *testing.T) {
	removed := map[string][]string{
		"Condition":   {"code", "evidence", "note", "stage"},
		"Observation": {"code", "value[x]", "interpretation", "note", "component"},
	}
	s := newServerWith(t, func(c *config.Config) {
		c.Policy.Labels.Redact = []config.LabelRedaction{{Labels: []string{"R", "HIV"}, Elements: removed}}
		// A public app that may also write for its user.
		c.Clients = append(c.Clients, config.Client{
			ClientID: "chart-writer", ClientName: "chart writer", TokenEndpointAuthMethod: "none",
			RedirectURIs: []string{c.Issuer() + "/demo/app/"}, GrantTypes: []string{"authorization_code"},
			Scope: "openid fhirUser user/*.cruds",
		})
	})
	alice := demo.AlicePatientID
	conds := "/Condition?patient=Patient/" + alice + "&_count=2&_total=accurate"
	all, _, _, _, st := s.searchAll(conds, s.system)
	if st != 200 {
		t.Fatalf("oracle: %d", st)
	}
	// What drsmith (confidentiality N, no sensitivity code) should get for each resource.
	const whole, redacted, hidden = "whole", "redacted", "hidden"
	expect := func(labels []string) string {
		switch {
		case visibleTo(labels, "N", nil):
			return whole
		case visibleTo(labels, "V", []string{"HIV"}) && !slices.Contains(labels, "V"):
			return redacted // every label above N is R or HIV
		}
		return hidden
	}
	want := map[string]string{}
	count := map[string]int{}
	for k, res := range all {
		want[k] = expect(labelsOf(res))
		count[want[k]]++
	}
	if count[redacted] == 0 || count[hidden] == 0 || count[whole] == 0 {
		t.Fatalf("the demo data should have whole, redacted and hidden conditions: %v", count)
	}
	writer := s.browser()
	writer.clientID = "chart-writer"
	smith, granted, _ := writer.userToken("drsmith", "smith-demo-password", "openid fhirUser user/*.cruds", nil)
	if !strings.Contains(granted, "user/*.cruds") {
		t.Fatalf("granted %q", granted)
	}
	checkOne := func(t *testing.T, how, k string, res map[string]any) {
		t.Helper()
		typ := strings.Split(k, "/")[0]
		switch want[k] {
		case hidden:
			t.Errorf("%s returned hidden %s labelled %v", how, k, labelsOf(res))
		case whole:
			if subsetted(res) {
				t.Errorf("%s: %s is SUBSETTED", how, k)
			}
		case redacted:
			if !subsetted(res) {
				t.Errorf("%s: redacted %s lacks SUBSETTED", how, k)
			}
			for _, e := range append(removed[typ], "text") {
				if _, ok := res[e]; ok {
					t.Errorf("%s: redacted %s still has %s", how, k, e)
				}
			}
			if res["subject"] == nil || len(labelsOf(res)) == 0 {
				t.Errorf("%s: redacted %s lost its subject or labels: %v", how, k, res)
			}
		}
	}

	t.Run("search, read, shaping", func(t *testing.T) {
		got, _, total, _, st := s.searchAll(conds, smith)
		if st != 200 || len(got) != count[whole]+count[redacted] || total != len(got) {
			t.Fatalf("search: %d, %d matches, total %d, want %d", st, len(got), total, count[whole]+count[redacted])
		}
		for k, res := range got {
			checkOne(t, "search", k, res)
		}
		for k := range all {
			r := s.do("GET", "/"+k, smith, "", "")
			if want[k] == hidden {
				if r.status != 404 {
					t.Errorf("GET hidden %s = %d", k, r.status)
				}
				continue
			}
			if r.status != 200 {
				t.Fatalf("GET %s = %d", k, r.status)
			}
			checkOne(t, "read", k, r.body)
			for _, q := range []string{"?_summary=true", "?_elements=code,note", "?_summary=text"} {
				r := s.do("GET", "/"+k+q, smith, "", "")
				if r.status != 200 {
					t.Fatalf("GET %s%s = %d", k, q, r.status)
				}
				if want[k] == redacted && (r.body["code"] != nil || r.body["note"] != nil || r.body["text"] != nil) {
					t.Errorf("GET %s%s brings back a removed element: %s", k, q, r.raw)
				}
			}
		}
	})

	t.Run("other ways out", func(t *testing.T) {
		_, inc, _, _, st := s.searchAll("/Patient?_id="+alice+"&_revinclude=Condition:subject", smith)
		if st != 200 {
			t.Fatalf("revinclude: %d", st)
		}
		n := 0
		for k, res := range inc {
			if strings.HasPrefix(k, "Condition/") {
				checkOne(t, "_revinclude", k, res)
				n++
			}
		}
		if n != count[whole]+count[redacted] {
			t.Errorf("_revinclude gave %d conditions, want %d", n, count[whole]+count[redacted])
		}
		var red string
		for k := range all {
			if want[k] == redacted {
				red = k
				break
			}
		}
		hist := s.do("GET", "/"+red+"/_history", smith, "", "")
		if hist.status != 200 {
			t.Fatalf("history: %d", hist.status)
		}
		for _, e := range hist.body["entry"].([]any) {
			checkOne(t, "history", red, e.(map[string]any)["resource"].(map[string]any))
		}
		batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"` + red + `"}},{"request":{"method":"GET","url":"` +
			strings.TrimPrefix(conds, "/") + `"}}]}`
		b := s.do("POST", "", smith, "application/fhir+json", batch)
		if b.status != 200 {
			t.Fatalf("batch: %d %s", b.status, b.raw)
		}
		entries := b.body["entry"].([]any)
		checkOne(t, "batch read", red, entries[0].(map[string]any)["resource"].(map[string]any))
		inner := entries[1].(map[string]any)["resource"].(map[string]any)
		for _, e := range inner["entry"].([]any) {
			res := e.(map[string]any)["resource"].(map[string]any)
			if res["resourceType"] == "Condition" {
				checkOne(t, "batch search", "Condition/"+strOf(res["id"]), res)
			}
		}
		ev := s.do("GET", "/Patient/"+alice+"/$everything?_count=500", smith, "", "")
		if ev.status != 200 {
			t.Fatalf("$everything = %d", ev.status)
		}
		n = 0
		for _, e := range ev.body["entry"].([]any) {
			res := e.(map[string]any)["resource"].(map[string]any)
			k := strOf(res["resourceType"]) + "/" + strOf(res["id"])
			if _, ok := want[k]; ok {
				checkOne(t, "$everything", k, res)
				n++
			}
		}
		if n != count[whole]+count[redacted] {
			t.Errorf("$everything gave %d conditions, want %d", n, count[whole]+count[redacted])
		}
	})

	t.Run("searching a removed element finds nothing redacted", func(t *testing.T) {
		for k, res := range all {
			if want[k] != redacted {
				continue
			}
			coding := res["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)
			q := "/Condition?patient=Patient/" + alice + "&_total=accurate&code=" + url.QueryEscape(strOf(coding["system"])+"|"+strOf(coding["code"]))
			if got, _, total, _, st := s.searchAll(q, smith); st != 200 || len(got) != 0 || total != 0 {
				t.Errorf("%s by its code: %d, %d matches, total %d", k, st, len(got), total)
			}
			if got, _, _, _, _ := s.searchAll(q, s.system); len(got) == 0 {
				t.Errorf("the oracle does not find %s by its code", k)
			}
			// Nor through a _has, whose targets hide redacted labels too.
			has := "/Patient?_has:Condition:patient:code=" + url.QueryEscape(strOf(coding["system"])+"|"+strOf(coding["code"]))
			if got, _, _, _, st := s.searchAll(has, smith); st != 200 || got["Patient/"+alice] != nil {
				t.Errorf("_has on %s's code: %d, found Alice %v", k, st, got["Patient/"+alice] != nil)
			}
			if got, _, _, _, _ := s.searchAll(has, s.system); got["Patient/"+alice] == nil {
				t.Errorf("the oracle does not find Alice through _has on %s", k)
			}
			got, _, _, _, _ := s.searchAll("/Condition?patient=Patient/"+alice+"&_sort=code", smith)
			if _, ok := got[k]; ok {
				t.Errorf("_sort on code returned redacted %s", k)
			}
		}
	})

	t.Run("nothing seen redacted can be changed", func(t *testing.T) {
		for k, res := range all {
			if want[k] != redacted {
				continue
			}
			full, _ := json.Marshal(res)
			seen := s.do("GET", "/"+k, smith, "", "")
			for _, w := range []struct{ method, body string }{
				{"PUT", seen.raw},     // the redacted copy back: would lose the removed elements
				{"PUT", string(full)}, // the whole resource, which this user never saw
				{"DELETE", ""},
			} {
				if r := s.do(w.method, "/"+k, smith, "application/fhir+json", w.body); r.status != 403 {
					t.Errorf("%s %s = %d %s", w.method, k, r.status, r.raw)
				}
			}
			// Nor in a transaction.
			tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"` + s.fhir + "/" + k + `","resource":` + seen.raw +
				`,"request":{"method":"PUT","url":"` + k + `"}}]}`
			if r := s.do("POST", "", smith, "application/fhir+json", tx); r.status != 403 {
				t.Errorf("transaction PUT %s = %d %s", k, r.status, r.raw)
			}
			// Nor created: a new resource with the same labels.
			if r := s.do("POST", "/Condition", smith, "application/fhir+json", string(full)); r.status != 403 {
				t.Errorf("create labelled like %s = %d", k, r.status)
			}
			after := s.do("GET", "/"+k, s.system, "", "")
			if after.body["meta"].(map[string]any)["versionId"] != res["meta"].(map[string]any)["versionId"] {
				t.Errorf("%s changed: %s", k, after.raw)
			}
		}
	})
}
