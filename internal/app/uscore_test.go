package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
)

// demoServer starts the whole server with a few demo patients and returns its base URL and a
// system/*.rs token from the demo confidential client.
func demoServer(t *testing.T, patients int) (base, token string) {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base = "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = t.TempDir()
	cfg.Demo = true
	cfg.DemoPatients = patients
	cfg.AdminAddr = ""
	a, err := app.New(ctx, cfg, app.Options{Lookup: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.LoadDemo(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
	req, _ := http.NewRequest("POST", base+"/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-confidential", "demo-confidential-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("client_credentials: %d %v", resp.StatusCode, err)
	}
	return base, tok.AccessToken
}

type searchResult struct {
	status  int
	matches []map[string]any
	other   []map[string]any // includes
	body    []byte
}

func fhirSearch(t *testing.T, base, token, method, path string) searchResult {
	t.Helper()
	var req *http.Request
	if method == "POST" {
		typ, query, _ := strings.Cut(path, "?")
		req, _ = http.NewRequest("POST", base+"/fhir/"+typ+"/_search", strings.NewReader(query))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequest("GET", base+"/fhir/"+path, nil)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := searchResult{status: resp.StatusCode, body: body}
	var b struct {
		Entry []struct {
			Resource map[string]any
			Search   struct{ Mode string }
		}
	}
	_ = json.Unmarshal(body, &b)
	for _, e := range b.Entry {
		switch e.Search.Mode {
		case "match":
			r.matches = append(r.matches, e.Resource)
		case "include":
			r.other = append(r.other, e.Resource)
		}
	}
	return r
}

// firstCoding returns system|code of the first coding of element el (a CodeableConcept or a list).
func firstCoding(res map[string]any, el string) string {
	v := res[el]
	if list, ok := v.([]any); ok && len(list) > 0 {
		v = list[0]
	}
	cc, _ := v.(map[string]any)
	codings, _ := cc["coding"].([]any)
	if len(codings) == 0 {
		return ""
	}
	c := codings[0].(map[string]any)
	return c["system"].(string) + "|" + c["code"].(string)
}

// The US Core SHALL search combinations (SMART-CONFORMANCE §7.4) on demo data: each answers a
// searchset, the ones the demo data holds find Patient/example-alice's resources, POST _search
// gives what GET gives, and patient=Patient/{id} what patient={id} gives.
func TestUSCoreSearches(t *testing.T) {
	base, token := demoServer(t, 4)
	const pid = "example-alice"
	obs := fhirSearch(t, base, token, "GET", "Observation?patient="+pid+"&category=laboratory")
	if obs.status != 200 || len(obs.matches) == 0 {
		t.Fatalf("alice's laboratory Observations: %d, %d found", obs.status, len(obs.matches))
	}
	labCode := firstCoding(obs.matches[0], "code")
	effective, _ := obs.matches[0]["effectiveDateTime"].(string)
	cond := fhirSearch(t, base, token, "GET", "Condition?patient="+pid)
	condCategory := firstCoding(cond.matches[0], "category")
	reports := fhirSearch(t, base, token, "GET", "DiagnosticReport?patient="+pid)
	reportCode := firstCoding(reports.matches[0], "code")
	reportCategory := firstCoding(reports.matches[0], "category")
	meds := fhirSearch(t, base, token, "GET", "MedicationRequest?patient="+pid)
	intent, _ := meds.matches[0]["intent"].(string)
	status, _ := meds.matches[0]["status"].(string)
	careTeams := fhirSearch(t, base, token, "GET", "CareTeam?patient="+pid)
	ctStatus, _ := careTeams.matches[0]["status"].(string)
	encounters := fhirSearch(t, base, token, "GET", "Encounter?patient="+pid)
	encID, _ := encounters.matches[0]["id"].(string)
	encStart := encounters.matches[0]["period"].(map[string]any)["start"].(string)
	date := effective[:10]

	tests := []struct {
		query     string
		wantFound bool
	}{
		{"Patient?_id=" + pid, true},
		{"Patient?identifier=" + url.QueryEscape(identifierOf(t, base, token, pid)), true},
		{"Patient?name=alice", true},
		{"Patient?birthdate=" + birthDateOf(t, base, token, pid) + "&name=alice", true},
		{"Patient?gender=female&name=alice", true},
		{"Patient?_id=" + pid + "&_revinclude=Provenance:target", true},
		{"AllergyIntolerance?patient=" + pid, true},
		{"CarePlan?patient=" + pid + "&category=assess-plan", false},
		{"CareTeam?patient=" + pid + "&status=" + ctStatus, true},
		{"CareTeam?patient=" + pid + "&status=" + ctStatus + "&_include=CareTeam:participant:Practitioner", true},
		{"Condition?patient=" + pid, true},
		{"Condition?patient=" + pid + "&category=" + url.QueryEscape(condCategory), true},
		{"Coverage?patient=" + pid, false},
		{"Device?patient=" + pid, false},
		{"DiagnosticReport?patient=" + pid, true},
		{"DiagnosticReport?patient=" + pid + "&category=" + url.QueryEscape(reportCategory), true},
		{"DiagnosticReport?patient=" + pid + "&code=" + url.QueryEscape(reportCode), true},
		{"DiagnosticReport?patient=" + pid + "&category=" + url.QueryEscape(reportCategory) + "&date=ge1900-01-01", true},
		{"DocumentReference?patient=" + pid, false},
		{"Encounter?patient=" + pid, true},
		{"Encounter?_id=" + encID, true},
		{"Encounter?date=" + "ge" + encStart[:10] + "&patient=" + pid, true},
		{"Goal?patient=" + pid, false},
		{"Immunization?patient=" + pid, true},
		{"MedicationDispense?patient=" + pid + "&_include=MedicationDispense:medication", false},
		{"MedicationRequest?patient=" + pid + "&intent=" + intent, true},
		{"MedicationRequest?patient=" + pid + "&intent=" + intent + "&status=" + status + ",stopped", true},
		{"MedicationRequest?patient=" + pid + "&intent=" + intent + "&_include=MedicationRequest:medication", true},
		{"Observation?patient=" + pid + "&category=laboratory", true},
		{"Observation?patient=" + pid + "&code=" + url.QueryEscape(labCode), true},
		{"Observation?patient=" + pid + "&category=laboratory&date=ge" + date, true},
		{"Observation?patient=" + pid + "&category=laboratory&date=le" + date, true},
		{"Observation?patient=" + pid + "&category=laboratory&date=gt1900-01-01&date=lt2999-01-01", true},
		{"Procedure?patient=" + pid, false},
		{"Procedure?patient=" + pid + "&date=ge2000-01-01", false},
		{"QuestionnaireResponse?patient=" + pid, false},
		{"ServiceRequest?patient=" + pid, false},
		{"Specimen?_id=x", false},
		{"RelatedPerson?_id=x", false},
		{"Organization?name=a", false},
		{"Practitioner?name=smith", true},
		{"PractitionerRole?practitioner=Practitioner/example-smith&_include=PractitionerRole:practitioner", true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			get := fhirSearch(t, base, token, "GET", tt.query)
			if get.status != 200 {
				t.Fatalf("GET %s = %d %s", tt.query, get.status, get.body)
			}
			if tt.wantFound && len(get.matches) == 0 {
				t.Fatalf("GET %s found nothing", tt.query)
			}
			post := fhirSearch(t, base, token, "POST", tt.query)
			if post.status != 200 || len(post.matches) != len(get.matches) || len(post.other) != len(get.other) {
				t.Errorf("POST _search %s = %d with %d+%d, GET gave %d+%d", tt.query, post.status, len(post.matches), len(post.other), len(get.matches), len(get.other))
			}
			if strings.Contains(tt.query, "patient="+pid) {
				ref := strings.Replace(tt.query, "patient="+pid, "patient=Patient/"+pid, 1)
				byRef := fhirSearch(t, base, token, "GET", ref)
				if byRef.status != 200 || len(byRef.matches) != len(get.matches) {
					t.Errorf("patient=Patient/%s gave %d, patient=%s gave %d", pid, len(byRef.matches), pid, len(get.matches))
				}
			}
		})
	}
}

func identifierOf(t *testing.T, base, token, pid string) string {
	r := fhirSearch(t, base, token, "GET", "Patient?_id="+pid)
	ids := r.matches[0]["identifier"].([]any)
	id := ids[0].(map[string]any)
	return id["system"].(string) + "|" + id["value"].(string)
}

func birthDateOf(t *testing.T, base, token, pid string) string {
	r := fhirSearch(t, base, token, "GET", "Patient?_id="+pid)
	return r.matches[0]["birthDate"].(string)
}
