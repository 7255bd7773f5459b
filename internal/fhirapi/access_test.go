package fhirapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// world is two patients with a few resources each, written with a system token.
type world struct {
	c              *client
	admin          string
	p1, p2         string
	p1Lab, p1Vital string
	p2Lab          string
	p1Enc, p2Enc   string
}

const (
	obsTemplate = `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":%q}]}],"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/%s"},"encounter":{"reference":"Encounter/%s"}}`
	encTemplate = `{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/%s"}}`
)

func newWorld(t *testing.T) *world {
	c := newServer(t)
	w := &world{c: c, admin: c.token}
	w.p1, _ = c.create("Patient", alice)
	w.p2, _ = c.create("Patient", strings.Replace(alice, "Liddell", "Other", 1))
	w.p1Enc, _ = c.create("Encounter", fmt.Sprintf(encTemplate, w.p1))
	w.p2Enc, _ = c.create("Encounter", fmt.Sprintf(encTemplate, w.p2))
	w.p1Lab, _ = c.create("Observation", fmt.Sprintf(obsTemplate, "laboratory", "4548-4", w.p1, w.p1Enc))
	w.p1Vital, _ = c.create("Observation", fmt.Sprintf(obsTemplate, "vital-signs", "8867-4", w.p1, w.p1Enc))
	w.p2Lab, _ = c.create("Observation", fmt.Sprintf(obsTemplate, "laboratory", "4548-4", w.p2, w.p2Enc))
	return w
}

func (w *world) as(t *testing.T, c claims) *client {
	cl := *w.c
	cl.t = t
	cl.token = w.c.mint.token(t, c)
	return &cl
}

func ids(t *testing.T, r response) []string {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("search = %d %s", r.status, r.body)
	}
	var out []string
	entries, _ := r.json(t)["entry"].([]any)
	for _, e := range entries {
		res := e.(map[string]any)["resource"].(map[string]any)
		if res["resourceType"] == "OperationOutcome" {
			continue
		}
		out = append(out, res["resourceType"].(string)+"/"+res["id"].(string))
	}
	return out
}

func TestAuthentication(t *testing.T) {
	w := newWorld(t)
	anon := *w.c
	anon.token = ""
	r := anon.do("GET", "/Patient/"+w.p1, "")
	wantOutcome(t, r, http.StatusUnauthorized, "")
	if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") || strings.Contains(h, "error=") {
		t.Errorf("no token: WWW-Authenticate = %q, want a Bearer challenge without error", h)
	}
	bad := anon
	bad.token = "not.a.token"
	r = bad.do("GET", "/Patient/"+w.p1, "")
	wantOutcome(t, r, http.StatusUnauthorized, "")
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
		t.Errorf("bad token: WWW-Authenticate = %q, want invalid_token", h)
	}
	// A token for another audience (or a look-alike base) is refused.
	other := newMinter(t, "http://evil.example/fhir")
	bad.token = other.token(t, claims{scope: "system/*.cruds"})
	wantOutcome(t, bad.do("GET", "/Patient/"+w.p1, ""), http.StatusUnauthorized, "")
	// The CapabilityStatement needs no token.
	if r := anon.do("GET", "/metadata", ""); r.status != 200 {
		t.Errorf("metadata without a token = %d", r.status)
	}
	// An unauthenticated write stores nothing.
	wantOutcome(t, anon.do("POST", "/Patient", alice), http.StatusUnauthorized, "")
}

func TestPatientContextBoundsEveryPath(t *testing.T) {
	w := newWorld(t)
	p1 := w.as(t, claims{scope: "launch/patient patient/*.rs", patient: w.p1})
	tests := []struct {
		name   string
		path   string
		status int
		want   []string // for searches: exactly these resources
	}{
		{"own patient", "/Patient/" + w.p1, 200, nil},
		{"other patient", "/Patient/" + w.p2, 404, nil},
		{"own observation", "/Observation/" + w.p1Lab, 200, nil},
		{"other's observation", "/Observation/" + w.p2Lab, 404, nil},
		{"other's observation vread", "/Observation/" + w.p2Lab + "/_history/1", 404, nil},
		{"other's observation history", "/Observation/" + w.p2Lab + "/_history", 404, nil},
		{"search observations", "/Observation", 200, []string{"Observation/" + w.p1Lab, "Observation/" + w.p1Vital}},
		{"search naming the other patient", "/Observation?patient=" + w.p2, 200, nil},
		{"search patients", "/Patient", 200, []string{"Patient/" + w.p1}},
		{"compartment of the other patient", "/Patient/" + w.p2 + "/Observation", 403, nil},
		{"own compartment", "/Patient/" + w.p1 + "/Observation", 200, []string{"Observation/" + w.p1Lab, "Observation/" + w.p1Vital}},
		{"_include of encounters", "/Observation?_include=Observation:encounter", 200, []string{"Observation/" + w.p1Lab, "Observation/" + w.p1Vital, "Encounter/" + w.p1Enc}},
		{"_revinclude from the encounter", "/Encounter?_revinclude=Observation:encounter", 200, []string{"Encounter/" + w.p1Enc, "Observation/" + w.p1Lab, "Observation/" + w.p1Vital}},
		{"system search", "/?_type=Observation,Encounter", 200, []string{"Observation/" + w.p1Lab, "Observation/" + w.p1Vital, "Encounter/" + w.p1Enc}},
		{"type history", "/Observation/_history", 403, nil},
		{"system history", "/_history", 403, nil},
		{"$everything of the other patient", "/Patient/" + w.p2 + "/$everything", 404, nil},
		{"own $everything", "/Patient/" + w.p1 + "/$everything", 200, []string{"Patient/" + w.p1, "Encounter/" + w.p1Enc, "Observation/" + w.p1Lab, "Observation/" + w.p1Vital}},
		{"unmodelled operation", "/Patient/$export", 403, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p1.do("GET", tt.path, "")
			if r.status != tt.status {
				t.Fatalf("GET %s = %d, want %d: %s", tt.path, r.status, tt.status, r.body)
			}
			if tt.status != 200 {
				wantOutcome(t, r, tt.status, "")
				return
			}
			if tt.want == nil && !strings.Contains(tt.path, "?patient=") {
				return
			}
			got := ids(t, r)
			if strings.Contains(tt.path, "?patient=") {
				if len(got) != 0 {
					t.Errorf("GET %s leaked %v", tt.path, got)
				}
				return
			}
			if fmt.Sprint(sorted(got)) != fmt.Sprint(sorted(tt.want)) {
				t.Errorf("GET %s = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestPatientTokenFailsClosed(t *testing.T) {
	w := newWorld(t)
	// patient/ scopes without a patient claim grant nothing (SECURITY-LESSONS #1).
	noPatient := w.as(t, claims{scope: "patient/*.rs"})
	wantOutcome(t, noPatient.do("GET", "/Observation", ""), http.StatusForbidden, "")
	wantOutcome(t, noPatient.do("GET", "/Observation/"+w.p1Lab, ""), http.StatusForbidden, "")
	// A scope for another type does not reach Observation.
	condOnly := w.as(t, claims{scope: "patient/Condition.rs", patient: w.p1})
	wantOutcome(t, condOnly.do("GET", "/Observation/"+w.p1Lab, ""), http.StatusForbidden, "")
	// Read-only scopes cannot write.
	p1 := w.as(t, claims{scope: "patient/*.rs", patient: w.p1})
	wantOutcome(t, p1.do("POST", "/Observation", fmt.Sprintf(obsTemplate, "laboratory", "1-1", w.p1, w.p1Enc)), http.StatusForbidden, "")
}

func TestPatientWritesStayInTheCompartment(t *testing.T) {
	w := newWorld(t)
	p1 := w.as(t, claims{scope: "patient/Observation.cruds", patient: w.p1})
	if r := p1.do("POST", "/Observation", fmt.Sprintf(obsTemplate, "laboratory", "1-1", w.p1, w.p1Enc)); r.status != 201 {
		t.Fatalf("create in own compartment = %d %s", r.status, r.body)
	}
	r := p1.do("POST", "/Observation", fmt.Sprintf(obsTemplate, "laboratory", "1-1", w.p2, w.p2Enc))
	if r.status != 403 && r.status != 404 {
		t.Errorf("create for another patient = %d, want 403/404: %s", r.status, r.body)
	}
	// Moving one's own Observation to another patient, or overwriting theirs, is refused.
	moved := fmt.Sprintf(strings.Replace(obsTemplate, `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":%q,`, 1), w.p1Lab, "laboratory", "4548-4", w.p2, w.p2Enc)
	if r := p1.do("PUT", "/Observation/"+w.p1Lab, moved); r.status != 403 && r.status != 404 {
		t.Errorf("update moving the resource to another patient = %d: %s", r.status, r.body)
	}
	theirs := fmt.Sprintf(strings.Replace(obsTemplate, `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":%q,`, 1), w.p2Lab, "laboratory", "4548-4", w.p1, w.p1Enc)
	if r := p1.do("PUT", "/Observation/"+w.p2Lab, theirs); r.status != 403 && r.status != 404 {
		t.Errorf("update taking another patient's resource = %d: %s", r.status, r.body)
	}
	if r := p1.do("DELETE", "/Observation/"+w.p2Lab, ""); r.status != 403 && r.status != 404 {
		t.Errorf("delete of another patient's resource = %d: %s", r.status, r.body)
	}
	// Nothing of p2 changed.
	if r := w.c.do("GET", "/Observation/"+w.p2Lab, ""); r.status != 200 || r.header.Get("ETag") != `W/"1"` {
		t.Errorf("p2's Observation after the attempts = %d %s", r.status, r.header.Get("ETag"))
	}
}

func TestGranularScopes(t *testing.T) {
	w := newWorld(t)
	labs := w.as(t, claims{scope: "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory", patient: w.p1})
	if r := labs.do("GET", "/Observation/"+w.p1Lab, ""); r.status != 200 {
		t.Errorf("read of a lab with a laboratory scope = %d %s", r.status, r.body)
	}
	wantOutcome(t, labs.do("GET", "/Observation/"+w.p1Vital, ""), http.StatusNotFound, "")
	got := ids(t, labs.do("GET", "/Observation", ""))
	if fmt.Sprint(got) != fmt.Sprint([]string{"Observation/" + w.p1Lab}) {
		t.Errorf("search with a laboratory scope = %v, want only the lab", got)
	}
	got = ids(t, labs.do("GET", "/Observation?category=vital-signs", ""))
	if len(got) != 0 {
		t.Errorf("searching vital signs with a laboratory scope returned %v", got)
	}
}

// Paging links are bound to who asked: another patient's token cannot replay them, and the
// narrowing is applied again on every page.
func TestPageLinksAreBoundToTheCaller(t *testing.T) {
	w := newWorld(t)
	for i := range 4 {
		w.c.create("Observation", fmt.Sprintf(obsTemplate, "laboratory", fmt.Sprint("9-", i), w.p1, w.p1Enc))
	}
	p1 := w.as(t, claims{scope: "patient/*.rs", patient: w.p1})
	first := p1.do("GET", "/Observation?_count=2", "").json(t)
	var next string
	for _, l := range first["link"].([]any) {
		if l.(map[string]any)["relation"] == "next" {
			next = l.(map[string]any)["url"].(string)
		}
	}
	if next == "" {
		t.Fatal("no next link")
	}
	p2 := w.as(t, claims{scope: "patient/*.rs", patient: w.p2})
	wantOutcome(t, p2.do("GET", next, ""), http.StatusBadRequest, "_page")
	if r := p1.do("GET", next, ""); r.status != 200 {
		t.Errorf("the caller's own next link = %d", r.status)
	}
}

func TestBundleEntriesAreAuthorized(t *testing.T) {
	w := newWorld(t)
	p1 := w.as(t, claims{scope: "patient/*.cruds", patient: w.p1})
	batch := fmt.Sprintf(`{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Observation/%s"}},
		{"request":{"method":"GET","url":"Observation/%s"}},
		{"request":{"method":"DELETE","url":"Observation/%s"}}]}`, w.p1Lab, w.p2Lab, w.p2Lab)
	r := p1.do("POST", "", batch)
	if r.status != 200 {
		t.Fatalf("batch = %d %s", r.status, r.body)
	}
	entries := r.json(t)["entry"].([]any)
	status := func(i int) string {
		return entries[i].(map[string]any)["response"].(map[string]any)["status"].(string)
	}
	if !strings.HasPrefix(status(0), "200") || !strings.HasPrefix(status(1), "404") || strings.HasPrefix(status(2), "2") {
		t.Errorf("batch statuses = %q %q %q, want 200, 404 and a refusal", status(0), status(1), status(2))
	}
	if strings.Contains(string(r.body), `"id":"`+w.p2Lab+`"`) {
		t.Error("the batch response leaked the other patient's Observation")
	}
	tx := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"DELETE","url":"Observation/%s"}}]}`, w.p2Lab)
	if r := p1.do("POST", "", tx); r.status < 400 {
		t.Errorf("transaction deleting another patient's data = %d", r.status)
	}
	if r := w.c.do("GET", "/Observation/"+w.p2Lab, ""); r.status != 200 {
		t.Errorf("p2's Observation after the refused transaction = %d", r.status)
	}
}
