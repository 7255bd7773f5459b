package fhirapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
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

func newWorld(t *testing.T) *world { return newWorldWith(t, nil) }

func newWorldWith(t *testing.T, wrap func(backend.Backend) backend.Backend) *world {
	c := newServerWith(t, wrap)
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

// Conditional create is a search: its criteria are narrowed to the caller's compartment, so a
// match on another patient's resource can neither be returned nor told apart from no match.
func TestConditionalCreateCannotFindAnotherPatientsResource(t *testing.T) {
	w := newWorld(t)
	p1 := w.as(t, claims{scope: "patient/Observation.cruds", patient: w.p1})
	own := fmt.Sprintf(obsTemplate, "laboratory", "5-5", w.p1, w.p1Enc)
	r := p1.do("POST", "/Observation", own, "If-None-Exist", "_id="+w.p2Lab)
	if r.status != http.StatusCreated {
		t.Fatalf("If-None-Exist naming another patient's Observation = %d %s, want 201 (no visible match)", r.status, r.body)
	}
	if strings.Contains(string(r.body), w.p2Lab) {
		t.Errorf("conditional create answered with the other patient's Observation: %s", r.body)
	}
	// A criterion both patients' labs match finds only the caller's own one.
	r = p1.do("POST", "/Observation", own, "If-None-Exist", "code=4548-4")
	if r.status != http.StatusOK || r.json(t)["id"] != w.p1Lab {
		t.Errorf("If-None-Exist matching both patients' labs = %d %s, want 200 with the caller's lab", r.status, r.body)
	}
	// A token that may create but not search cannot use criteria to probe the store.
	createOnly := w.as(t, claims{scope: "patient/Observation.c", patient: w.p1})
	if r := createOnly.do("POST", "/Observation", own, "If-None-Exist", "_id="+w.p1Lab); r.status != http.StatusForbidden {
		t.Errorf("conditional create with a create-only token = %d %s, want 403", r.status, r.body)
	}
}

func TestBundleConditionalCreateCannotReturnAnotherPatientsResource(t *testing.T) {
	w := newWorld(t)
	p1 := w.as(t, claims{scope: "patient/*.cruds", patient: w.p1})
	own := fmt.Sprintf(obsTemplate, "laboratory", "5-5", w.p1, w.p1Enc)
	for _, typ := range []string{"batch", "transaction"} {
		b := fmt.Sprintf(`{"resourceType":"Bundle","type":%q,"entry":[
			{"resource":%s,"request":{"method":"POST","url":"Observation","ifNoneExist":"_id=%s"}}]}`, typ, own, w.p2Lab)
		r := p1.do("POST", "", b)
		if strings.Contains(string(r.body), w.p2Lab) || strings.Contains(string(r.body), w.p2Enc) {
			t.Errorf("%s with ifNoneExist naming another patient's Observation leaked it: %d %s", typ, r.status, r.body)
		}
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"201`) {
			t.Errorf("%s = %d %s, want a created entry (no visible match)", typ, r.status, r.body)
		}
	}
	// Conditional delete matching only another patient's resource deletes nothing.
	del := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[
		{"request":{"method":"DELETE","url":"Observation?_id=%s"}}]}`, w.p2Lab)
	p1.do("POST", "", del)
	if r := w.c.do("GET", "/Observation/"+w.p2Lab, ""); r.status != 200 {
		t.Errorf("p2's Observation after a conditional delete by p1 = %d", r.status)
	}
}

// racingBackend runs beforeUpdate once, right before the first Update reaches the store: a
// concurrent writer between the policy's decision and the write.
type racingBackend struct {
	backend.Backend
	once         sync.Once
	beforeUpdate func()
}

func (b *racingBackend) Update(ctx context.Context, typ, id string, body []byte, opts backend.UpdateOptions) (*fhir.Resource, bool, error) {
	b.once.Do(func() {
		if b.beforeUpdate != nil {
			b.beforeUpdate()
		}
	})
	return b.Backend.Update(ctx, typ, id, body, opts)
}

// An update is decided on the stored body it read; when another write moves the resource to
// another patient before the update is written, the update must not overwrite it.
func TestUpdateRacingAMoveToAnotherPatientIsRefused(t *testing.T) {
	var raced *racingBackend
	w := newWorldWith(t, func(b backend.Backend) backend.Backend {
		raced = &racingBackend{Backend: b}
		return raced
	})
	withID := strings.Replace(obsTemplate, `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":%q,`, 1)
	raced.beforeUpdate = func() {
		moved := fmt.Sprintf(withID, w.p1Lab, "laboratory", "4548-4", w.p2, w.p2Enc)
		if _, _, err := raced.Backend.Update(context.Background(), "Observation", w.p1Lab, []byte(moved), backend.UpdateOptions{}); err != nil {
			t.Errorf("concurrent move: %v", err)
		}
	}
	p1 := w.as(t, claims{scope: "patient/Observation.cruds", patient: w.p1})
	r := p1.do("PUT", "/Observation/"+w.p1Lab, fmt.Sprintf(withID, w.p1Lab, "laboratory", "1-1", w.p1, w.p1Enc))
	if r.status != http.StatusNotFound {
		t.Errorf("update after the resource moved to another patient = %d %s, want 404", r.status, r.body)
	}
	got := w.c.do("GET", "/Observation/"+w.p1Lab, "")
	if !strings.Contains(string(got.body), "Patient/"+w.p2) {
		t.Errorf("the other patient's Observation was overwritten: %s", got.body)
	}
}

// Deletes are idempotent for the caller who could see the resource: a second delete is 204, and
// still 404 for another patient.
func TestDeleteIsIdempotent(t *testing.T) {
	w := newWorld(t)
	p1 := w.as(t, claims{scope: "patient/Observation.cruds", patient: w.p1})
	for i := range 2 {
		if r := p1.do("DELETE", "/Observation/"+w.p1Lab, ""); r.status != http.StatusNoContent {
			t.Errorf("delete #%d of the caller's own Observation = %d %s, want 204", i+1, r.status, r.body)
		}
	}
	if r := w.c.do("DELETE", "/Observation/"+w.p2Lab, ""); r.status != http.StatusNoContent {
		t.Fatalf("system delete = %d", r.status)
	}
	wantOutcome(t, p1.do("DELETE", "/Observation/"+w.p2Lab, ""), http.StatusNotFound, "")
}

// A resource the caller may not see answers exactly as one that does not exist: same status,
// same OperationOutcome (the id aside), for read, vread, history and delete.
func TestRefusalsLookLikeMissingResources(t *testing.T) {
	w := newWorld(t)
	if r := w.c.do("DELETE", "/Encounter/"+w.p2Enc, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete = %d", r.status)
	}
	p1 := w.as(t, claims{scope: "patient/*.cruds", patient: w.p1})
	const missing = "does-not-exist"
	for _, tt := range []struct{ typ, hidden, suffix, method string }{
		{"Observation", w.p2Lab, "", "GET"},
		{"Observation", w.p2Lab, "/_history/1", "GET"},
		{"Observation", w.p2Lab, "/_history", "GET"},
		{"Encounter", w.p2Enc, "", "GET"},
		{"Encounter", w.p2Enc, "/_history/2", "GET"},
		{"Observation", w.p2Lab, "", "DELETE"},
	} {
		hidden := p1.do(tt.method, "/"+tt.typ+"/"+tt.hidden+tt.suffix, "")
		absent := p1.do(tt.method, "/"+tt.typ+"/"+missing+tt.suffix, "")
		h := strings.ReplaceAll(string(hidden.body), tt.hidden, "ID")
		a := strings.ReplaceAll(string(absent.body), missing, "ID")
		if hidden.status != absent.status || h != a {
			t.Errorf("%s %s/{id}%s: hidden = %d %s, missing = %d %s", tt.method, tt.typ, tt.suffix, hidden.status, h, absent.status, a)
		}
	}
}

// Reads inside a Bundle answer as the same reads outside: a deleted resource of another
// patient, or an older version that belonged to another patient, is 404 and never returned.
func TestBundleReadsOfOtherPatientsVersions(t *testing.T) {
	w := newWorld(t)
	withID := strings.Replace(obsTemplate, `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":%q,`, 1)
	// p2's lab is deleted; another Observation of p2 is later moved to p1.
	if r := w.c.do("DELETE", "/Observation/"+w.p2Lab, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete = %d", r.status)
	}
	movedID, _ := w.c.create("Observation", fmt.Sprintf(obsTemplate, "laboratory", "7-7", w.p2, w.p2Enc))
	if r := w.c.do("PUT", "/Observation/"+movedID, fmt.Sprintf(withID, movedID, "laboratory", "7-7", w.p1, w.p1Enc)); r.status != http.StatusOK {
		t.Fatalf("move = %d %s", r.status, r.body)
	}
	p1 := w.as(t, claims{scope: "patient/*.rs", patient: w.p1})
	// The same reads outside a Bundle.
	for _, path := range []string{"/Observation/" + w.p2Lab, "/Observation/" + w.p2Lab + "/_history/1", "/Observation/" + movedID + "/_history/1"} {
		wantOutcome(t, p1.do("GET", path, ""), http.StatusNotFound, "")
	}
	batch := fmt.Sprintf(`{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Observation/%s"}},
		{"request":{"method":"GET","url":"Observation/%s/_history/1"}},
		{"request":{"method":"GET","url":"Observation/%s/_history/1"}},
		{"request":{"method":"GET","url":"Observation/%s/_history/2"}}]}`, w.p2Lab, w.p2Lab, movedID, movedID)
	r := p1.do("POST", "", batch)
	if r.status != http.StatusOK {
		t.Fatalf("batch = %d %s", r.status, r.body)
	}
	entries := r.json(t)["entry"].([]any)
	for i, want := range []string{"404", "404", "404", "200"} {
		got := entries[i].(map[string]any)["response"].(map[string]any)["status"].(string)
		if !strings.HasPrefix(got, want) {
			t.Errorf("entry %d status = %q, want %s", i, got, want)
		}
	}
	if strings.Contains(string(r.body), "Patient/"+w.p2) {
		t.Errorf("the batch returned another patient's data: %s", r.body)
	}
}
