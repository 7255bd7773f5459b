package app_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demo"
)

const testAdminToken = "test-admin-token-0123456789"

// labelsOf reads meta.security codes of a resource.
func labelsOf(res map[string]any) []string {
	meta, _ := res["meta"].(map[string]any)
	sec, _ := meta["security"].([]any)
	var out []string
	for _, s := range sec {
		m, _ := s.(map[string]any)
		c, _ := m["code"].(string)
		out = append(out, c)
	}
	return out
}

// searchAll walks every page of a search and returns the matches (type/id → resource), the
// included resources, the first page's total and the outcome issues.
func (s *server) searchAll(path, token string) (matches, included map[string]map[string]any, total int, issues []string, status int) {
	s.t.Helper()
	matches, included, total = map[string]map[string]any{}, map[string]map[string]any{}, -1
	next := path
	for next != "" {
		r := s.do("GET", next, token, "", "")
		if r.status != 200 {
			return nil, nil, 0, nil, r.status
		}
		if total < 0 {
			if v, ok := r.body["total"].(float64); ok {
				total = int(v)
			}
		}
		next = ""
		links, _ := r.body["link"].([]any)
		for _, l := range links {
			lm, _ := l.(map[string]any)
			if lm["relation"] == "next" {
				next, _ = lm["url"].(string)
			}
		}
		entries, _ := r.body["entry"].([]any)
		for _, e := range entries {
			em, _ := e.(map[string]any)
			res, _ := em["resource"].(map[string]any)
			sm, _ := em["search"].(map[string]any)
			key := res["resourceType"].(string) + "/" + strOf(res["id"])
			switch sm["mode"] {
			case "match":
				matches[key] = res
			case "include":
				included[key] = res
			case "outcome":
				is, _ := res["issue"].([]any)
				for _, i := range is {
					im, _ := i.(map[string]any)
					issues = append(issues, strOf(im["severity"])+": "+strOf(im["diagnostics"]))
				}
			}
		}
	}
	return matches, included, total, issues, 200
}

func strOf(v any) string { s, _ := v.(string); return s }

// visibleTo reports whether labels are within a clearance (confidentiality rank and codes).
func visibleTo(labels []string, maxConf string, sens []string) bool {
	levels := "ULMNRV"
	for _, l := range labels {
		if len(l) == 1 && strings.Contains(levels, l) {
			if strings.Index(levels, l) > strings.Index(levels, maxConf) {
				return false
			}
			continue
		}
		if !slices.Contains(sens, l) {
			return false
		}
	}
	return true
}

func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *server) adminDo(method, path, body string) (int, map[string]any) {
	s.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000" // the admin listener admits loopback only
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.admin.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

// TestSecurityLabelsConsentBreakGlass drives clearance, Consent and break-glass end to end on
// the demo data with the demo logins, over real HTTP: the same search gives each clinician
// exactly what their clearance allows (counts and paging exact, includes and reads refused
// alike), Consents narrow the query (and take effect at once when the patient writes one),
// and break-glass lifts both with a header, a Bundle warning and a review item that a privacy
// officer closes once.
func TestSecurityLabelsConsentBreakGlass(t *testing.T) {
	s := newServerWith(t, func(c *config.Config) { c.AdminAddr = "127.0.0.1:0" })
	alice, bob := demo.AlicePatientID, demo.BobPatientID
	conds := "/Condition?patient=Patient/" + alice + "&_count=2&_total=accurate"
	all, _, _, _, st := s.searchAll(conds, s.system)
	if st != 200 || len(all) < 4 {
		t.Fatalf("oracle: %d %d", st, len(all))
	}
	smith, _, _ := s.browser().userToken("drsmith", "smith-demo-password", "openid fhirUser user/*.rs", nil)
	novak, _, _ := s.browser().userToken("drnovak", "novak-demo-password", "openid fhirUser user/*.rs", nil)
	if c := claimsOf(t, smith); c["clearance"] == nil || !slices.Contains(c["purpose_of_use"].([]any), any("TREAT")) {
		t.Errorf("drsmith's token claims: %v", c)
	}

	t.Run("clearance", func(t *testing.T) {
		users := []struct {
			name, token, conf string
			sens              []string
		}{
			{"drsmith", smith, "N", nil},
			{"drnovak", novak, "R", []string{"PSY", "ETH", "SUD", "MH", "BH"}},
		}
		seen := map[string]int{}
		for _, u := range users {
			want := map[string]bool{}
			for k, res := range all {
				if visibleTo(labelsOf(res), u.conf, u.sens) {
					want[k] = true
				}
			}
			got, _, total, _, st := s.searchAll(conds, u.token)
			if st != 200 {
				t.Fatalf("%s: %d", u.name, st)
			}
			if len(got) != len(want) || total != len(want) {
				t.Errorf("%s: %d matches, total %d, want %d", u.name, len(got), total, len(want))
			}
			for k := range got {
				if !want[k] {
					t.Errorf("%s sees %s labelled %v", u.name, k, labelsOf(got[k]))
				}
			}
			seen[u.name] = len(got)
			// Reads of what the clearance hides are 404, like missing resources.
			for k, res := range all {
				r := s.do("GET", "/"+k, u.token, "", "")
				if wantOK := want[k]; (r.status == 200) != wantOK || (!wantOK && r.status != 404) {
					t.Errorf("%s GET %s (labels %v) = %d", u.name, k, labelsOf(res), r.status)
				}
			}
			// Includes: the conditions reached through _revinclude obey the same clearance.
			_, inc, _, _, st := s.searchAll("/Patient?_id="+alice+"&_revinclude=Condition:subject", u.token)
			if st != 200 {
				t.Fatalf("%s revinclude: %d", u.name, st)
			}
			for k, res := range inc {
				if strings.HasPrefix(k, "Condition/") && !want[k] {
					t.Errorf("%s: _revinclude returned %s labelled %v", u.name, k, labelsOf(res))
				}
			}
		}
		if seen["drsmith"] >= seen["drnovak"] || seen["drnovak"] >= len(all) {
			t.Errorf("the two clinicians should see different subsets: %v of %d", seen, len(all))
		}
	})

	t.Run("consent", func(t *testing.T) {
		// Bob's demo Consent keeps the psychiatrist out of his record.
		got, _, total, _, st := s.searchAll("/Condition?_total=accurate&patient=Patient/"+bob, novak)
		if st != 200 || len(got) != 0 || total != 0 {
			t.Errorf("drnovak on Bob: %d %d %d", st, len(got), total)
		}
		// Across patients, Bob's data is excluded in the query (total exact).
		got, _, total, _, _ = s.searchAll("/Condition?_count=50&_total=accurate", novak)
		for k, res := range got {
			if strings.Contains(strOf(res["subject"].(map[string]any)["reference"]), bob) {
				t.Errorf("drnovak's search across patients returned Bob's %s", k)
			}
		}
		if total != len(got) {
			t.Errorf("total %d, %d matches", total, len(got))
		}
		// Alice writes a Consent with her own token: drsmith loses her conditions at once.
		b := s.browser()
		aliceTok, granted, _ := b.userToken("alice", "alice-demo-password", "launch/patient openid fhirUser patient/*.rs patient/Consent.cruds", nil)
		if !strings.Contains(granted, "patient/Consent.cruds") {
			t.Fatalf("granted %q", granted)
		}
		consent := `{"resourceType":"Consent","status":"active",
			"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
			"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
			"patient":{"reference":"Patient/` + alice + `"},
			"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
			"provision":{"type":"permit","provision":[{"type":"deny","actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Practitioner/` + demo.SmithPractitioner + `"}}],
				"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Condition"}]}]}}`
		r := s.do("POST", "/Consent", aliceTok, "application/fhir+json", consent)
		if r.status != 201 {
			t.Fatalf("alice's Consent: %d %s", r.status, r.raw)
		}
		id := strOf(r.body["id"])
		got, _, total, _, _ = s.searchAll(conds, smith)
		if len(got) != 0 || total != 0 {
			t.Errorf("after Alice's Consent drsmith sees %d (total %d)", len(got), total)
		}
		// Another patient's Consent cannot be written with Alice's token.
		other := strings.Replace(consent, "Patient/"+alice, "Patient/"+bob, 1)
		if r := s.do("POST", "/Consent", aliceTok, "application/fhir+json", other); r.status != 403 {
			t.Errorf("alice writing Bob's Consent = %d", r.status)
		}
		if r := s.do("DELETE", "/Consent/"+id, aliceTok, "", ""); r.status != 200 && r.status != 204 {
			t.Fatalf("delete: %d %s", r.status, r.raw)
		}
		got, _, _, _, _ = s.searchAll(conds, smith)
		if len(got) == 0 {
			t.Error("after the delete drsmith still sees nothing")
		}
	})

	t.Run("break-glass", func(t *testing.T) {
		var authzErr string
		for _, tc := range []struct {
			name, user, pw string
			extra          url.Values
		}{
			{"patient", "alice", "alice-demo-password", url.Values{"purpose_of_use": {"BTG"}, "break_glass_reason": {"curious"}}},
			{"no reason", "drsmith", "smith-demo-password", url.Values{"purpose_of_use": {"BTG"}}},
			{"purpose the role lacks", "drsmith", "smith-demo-password", url.Values{"purpose_of_use": {"HMARKT"}}},
		} {
			b := s.browser()
			authzErr = ""
			b.authzError = &authzErr
			tok, _, _ := b.userToken(tc.user, tc.pw, "openid fhirUser user/*.rs", tc.extra)
			if tok != "" || authzErr != "access_denied" {
				t.Errorf("%s: token %v, error %q", tc.name, tok != "", authzErr)
			}
		}
		btg, granted, _ := s.browser().userToken("drsmith", "smith-demo-password", "openid fhirUser offline_access user/*.rs",
			url.Values{"purpose_of_use": {"BTG"}, "break_glass_reason": {"unresponsive patient in the ER, HIV status needed"}})
		if strings.Contains(granted, "offline_access") {
			t.Errorf("break-glass granted %q", granted)
		}
		c := claimsOf(t, btg)
		if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat > 15*60 {
			t.Errorf("break-glass token lives %v s", exp-iat)
		}
		got, _, total, issues, _ := s.searchAll(conds, btg)
		if len(got) != len(all) || total != len(all) {
			t.Errorf("break-glass sees %d (total %d) of %d", len(got), total, len(all))
		}
		if len(issues) == 0 || !strings.Contains(issues[0], "break-glass") {
			t.Errorf("outcome issues %v", issues)
		}
		for k, res := range all {
			if slices.Contains(labelsOf(res), "HIV") {
				req, _ := http.NewRequest("GET", s.fhir+"/"+k, nil)
				req.Header.Set("Authorization", "Bearer "+btg)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Fhirgate-Break-Glass"), "active; review=") {
					t.Errorf("break-glass GET %s = %d, header %q", k, resp.StatusCode, resp.Header.Get("Fhirgate-Break-Glass"))
				}
			}
		}
		// Break-glass never widens scopes: user/*.rs does not write.
		if r := s.do("DELETE", "/Condition/"+strings.TrimPrefix(firstKey(all), "Condition/"), btg, "", ""); r.status != 403 {
			t.Errorf("break-glass delete = %d", r.status)
		}
		// The review queue: one open item, closed once with a decision.
		st, body := s.adminDo("GET", "/admin/break-glass?status=open", "")
		items, _ := body["items"].([]any)
		if st != 200 || len(items) != 1 {
			t.Fatalf("queue: %d %v", st, body)
		}
		item := items[0].(map[string]any)
		if item["username"] != "drsmith" || !strings.Contains(strOf(item["reason"]), "ER") {
			t.Errorf("item %v", item)
		}
		id := strOf(item["id"])
		if st, _ := s.adminDo("POST", "/admin/break-glass/"+id+"/close", `{"decision":"maybe","reviewer":"po"}`); st != 400 {
			t.Errorf("bad decision: %d", st)
		}
		if st, b := s.adminDo("POST", "/admin/break-glass/"+id+"/close", `{"decision":"justified","reviewer":"privacy-officer","note":"ER record"}`); st != 200 || b["status"] != "closed" {
			t.Errorf("close: %d %v", st, b)
		}
		if st, _ := s.adminDo("POST", "/admin/break-glass/"+id+"/close", `{"decision":"unjustified","reviewer":"other"}`); st != 409 {
			t.Errorf("second close: %d", st)
		}
		if st, body := s.adminDo("GET", "/admin/break-glass?status=open", ""); st != 200 || len(body["items"].([]any)) != 0 {
			t.Errorf("open after close: %v", body)
		}
		req := httptest.NewRequest("GET", "/admin/break-glass", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		s.admin.ServeHTTP(rec, req)
		if rec.Code != 401 {
			t.Errorf("queue without the admin token: %d", rec.Code)
		}
	})
}

func firstKey(m map[string]map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[0]
}
