package fhirapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

type client struct {
	t    *testing.T
	base string
	// token is sent as the bearer token of every request; newServer sets a system/*.cruds one.
	token string
	mint  *minter
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %s", r.status, r.body)
	}
	return m
}

func newServer(t *testing.T) *client { return newServerWith(t, nil) }

// newServerWith serves the API over the store, wrapped by wrap when it is not nil.
func newServerWith(t *testing.T, wrap func(backend.Backend) backend.Backend) *client {
	t.Helper()
	return newServerOpts(t, wrap, nil)
}

// newServerOpts is newServerWith with the API's options adjusted by tune when it is not nil.
func newServerOpts(t *testing.T, wrap func(backend.Backend) backend.Backend, tune func(*fhirapi.Options)) *client {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db"), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	v, err := validate.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String() + "/fhir"
	m := newMinter(t, base)
	var b backend.Backend = store
	if wrap != nil {
		b = wrap(store)
	}
	opts := fhirapi.Options{
		Backend: b, Registry: reg, Validator: v, BaseURL: base, DefaultCount: 10, MaxCount: 100,
		Authenticator: m.verifier(t), Policy: newPolicy(t, reg, base),
		Bundles: &bundle.Processor{Backend: store, Validator: v, BaseURL: base, Parse: bundle.SearchParser(reg, base, 100)},
	}
	if tune != nil {
		tune(&opts)
	}
	api, err := fhirapi.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = api
	srv.Start()
	t.Cleanup(srv.Close)
	return &client{t: t, base: base, mint: m, token: m.token(t, claims{scope: "system/*.cruds"})}
}

func (c *client) do(method, path string, body string, headers ...string) response {
	c.t.Helper()
	target := path
	if !strings.HasPrefix(path, "http") {
		target = c.base + path
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

const alice = `{"resourceType":"Patient","name":[{"family":"Liddell","given":["Alice"]}],"gender":"female","birthDate":"1980-02-03","identifier":[{"system":"urn:mrn","value":"A1"}]}`

func (c *client) create(typ, body string) (string, response) {
	c.t.Helper()
	r := c.do("POST", "/"+typ, body)
	if r.status != http.StatusCreated {
		c.t.Fatalf("create %s = %d %s", typ, r.status, r.body)
	}
	id, _ := r.json(c.t)["id"].(string)
	return id, r
}

func wantOutcome(t *testing.T, r response, status int, contains string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d: %s", r.status, status, r.body)
	}
	var oo fhir.OperationOutcome
	if err := json.Unmarshal(r.body, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
		t.Fatalf("body is not an OperationOutcome: %s", r.body)
	}
	if contains != "" && !strings.Contains(string(r.body), contains) {
		t.Errorf("OperationOutcome does not mention %q: %s", contains, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type = %q", ct)
	}
}

func TestCreateReadUpdateDelete(t *testing.T) {
	c := newServer(t)
	id, r := c.create("Patient", alice)
	if loc := r.header.Get("Location"); loc != c.base+"/Patient/"+id+"/_history/1" {
		t.Errorf("Location = %q", loc)
	}
	if et := r.header.Get("ETag"); et != `W/"1"` {
		t.Errorf("ETag = %q, want W/\"1\"", et)
	}
	if r.header.Get("Last-Modified") == "" {
		t.Error("no Last-Modified on create")
	}

	r = c.do("GET", "/Patient/"+id, "")
	if r.status != 200 || r.header.Get("ETag") != `W/"1"` {
		t.Fatalf("read = %d ETag %q", r.status, r.header.Get("ETag"))
	}
	if m := r.json(t); m["id"] != id || m["meta"].(map[string]any)["versionId"] != "1" {
		t.Errorf("read body = %s", r.body)
	}
	if r := c.do("GET", "/Patient/"+id, "", "If-None-Match", `W/"1"`); r.status != http.StatusNotModified {
		t.Errorf("read with matching If-None-Match = %d, want 304", r.status)
	}

	updated := strings.Replace(alice, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	updated = strings.Replace(updated, "Liddell", "Hargreaves", 1)
	r = c.do("PUT", "/Patient/"+id, updated)
	if r.status != 200 || r.header.Get("ETag") != `W/"2"` {
		t.Fatalf("update = %d %s", r.status, r.body)
	}
	wantOutcome(t, c.do("PUT", "/Patient/"+id, updated, "If-Match", `W/"1"`), http.StatusPreconditionFailed, "")
	if r := c.do("PUT", "/Patient/"+id, updated, "If-Match", `W/"2"`); r.status != 200 {
		t.Errorf("update with current If-Match = %d %s", r.status, r.body)
	}
	if r := c.do("GET", "/Patient/"+id+"/_history/1", ""); r.status != 200 || !strings.Contains(string(r.body), "Liddell") {
		t.Errorf("vread v1 = %d %s", r.status, r.body)
	}

	if r := c.do("DELETE", "/Patient/"+id, ""); r.status != http.StatusNoContent {
		t.Fatalf("delete = %d %s", r.status, r.body)
	}
	wantOutcome(t, c.do("GET", "/Patient/"+id, ""), http.StatusGone, "")
	if r := c.do("DELETE", "/Patient/"+id, ""); r.status != http.StatusNoContent {
		t.Errorf("second delete = %d, want 204 (idempotent)", r.status)
	}
	h := c.do("GET", "/Patient/"+id+"/_history", "").json(t)
	if h["type"] != "history" || int(h["total"].(float64)) != 4 {
		t.Errorf("history = %v", h)
	}
}

func TestUpdateCreatesWithClientID(t *testing.T) {
	c := newServer(t)
	body := strings.Replace(alice, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"chosen"`, 1)
	r := c.do("PUT", "/Patient/chosen", body)
	if r.status != http.StatusCreated || r.header.Get("Location") != c.base+"/Patient/chosen/_history/1" {
		t.Fatalf("PUT to an unused id = %d Location %q", r.status, r.header.Get("Location"))
	}
}

func TestBadRequests(t *testing.T) {
	c := newServer(t)
	id, _ := c.create("Patient", alice)
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		contains                 string
	}{
		{"bad JSON", "POST", "/Patient", `{"resourceType":`, nil, 400, "JSON"},
		{"not an object", "POST", "/Patient", `[1,2]`, nil, 400, ""},
		{"wrong type", "POST", "/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "Observation"},
		{"unknown type in body", "POST", "/Patient", `{"resourceType":"Nonsense"}`, nil, 400, "Nonsense"},
		{"invalid element", "POST", "/Patient", `{"resourceType":"Patient","gender":"blue"}`, nil, 422, "Patient.gender"},
		{"unknown element", "POST", "/Patient", `{"resourceType":"Patient","colour":"red"}`, nil, 422, ""},
		{"update without id", "PUT", "/Patient/" + id, alice, nil, 400, "id"},
		{"update id mismatch", "PUT", "/Patient/" + id, strings.Replace(alice, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"other"`, 1), nil, 400, "other"},
		{"unknown resource type", "GET", "/Nonsense/1", "", nil, 404, "Nonsense"},
		{"invalid id", "GET", "/Patient/bad_id!", "", nil, 400, ""},
		{"missing", "GET", "/Patient/missing", "", nil, 404, ""},
		{"vread missing version", "GET", "/Patient/" + id + "/_history/9", "", nil, 404, ""},
		{"vread bad version", "GET", "/Patient/" + id + "/_history/x", "", nil, 400, ""},
		{"XML body", "POST", "/Patient", "<Patient/>", []string{"Content-Type", "application/fhir+xml"}, 415, "XML"},
		{"XML accept", "GET", "/Patient/" + id, "", []string{"Accept", "application/fhir+xml"}, 415, ""},
		{"_format xml", "GET", "/Patient/" + id + "?_format=xml", "", nil, 415, "XML"},
		{"bad If-Match", "PUT", "/Patient/" + id, strings.Replace(alice, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1), []string{"If-Match", "banana"}, 400, "If-Match"},
		{"bad _count", "GET", "/Patient?_count=-1", "", nil, 400, "_count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			if tt.body != "" && len(tt.headers) > 0 && tt.headers[0] == "Content-Type" {
				req, _ := http.NewRequest(tt.method, c.base+tt.path, strings.NewReader(tt.body))
				req.Header.Set(tt.headers[0], tt.headers[1])
				req.Header.Set("Authorization", "Bearer "+c.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r = response{status: resp.StatusCode, header: resp.Header, body: b}
			} else {
				r = c.do(tt.method, tt.path, tt.body, tt.headers...)
			}
			wantOutcome(t, r, tt.status, tt.contains)
		})
	}
	// Nothing that was rejected was stored.
	h := c.do("GET", "/_history", "").json(t)
	if n := len(h["entry"].([]any)); n != 1 {
		t.Errorf("system history has %d entries after rejected writes, want 1", n)
	}
}

func TestSearchPaging(t *testing.T) {
	c := newServer(t)
	want := map[string]bool{}
	for i := range 25 {
		id, _ := c.create("Patient", strings.Replace(alice, "Liddell", fmt.Sprintf("Family%02d", i), 1))
		want[id] = true
	}
	seen := map[string]bool{}
	next := "/Patient?_count=10&gender=female"
	pages := 0
	for next != "" {
		pages++
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		b := c.do("GET", next, "").json(t)
		if b["type"] != "searchset" {
			t.Fatalf("not a searchset: %v", b)
		}
		next = ""
		for _, l := range b["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				next = l.(map[string]any)["url"].(string)
			}
		}
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			id := e.(map[string]any)["resource"].(map[string]any)["id"].(string)
			if seen[id] {
				t.Errorf("%s returned twice", id)
			}
			seen[id] = true
		}
	}
	if pages != 3 || len(seen) != 25 {
		t.Errorf("walked %d pages with %d patients, want 3 pages with 25", pages, len(seen))
	}
	for id := range want {
		if !seen[id] {
			t.Errorf("%s never returned", id)
		}
	}

	// A page link whose query was edited is refused.
	first := c.do("GET", "/Patient?_count=10&gender=female", "").json(t)
	var nextURL string
	for _, l := range first["link"].([]any) {
		if l.(map[string]any)["relation"] == "next" {
			nextURL = l.(map[string]any)["url"].(string)
		}
	}
	u, _ := url.Parse(nextURL)
	q := u.Query()
	q.Set("gender", "male")
	u.RawQuery = q.Encode()
	wantOutcome(t, c.do("GET", u.String(), ""), 400, "_page")
}

func TestSearchForms(t *testing.T) {
	c := newServer(t)
	c.create("Patient", alice)
	c.create("Patient", strings.Replace(alice, "Liddell", "Other", 1))
	get := c.do("GET", "/Patient?family=liddell", "").json(t)
	if n := len(get["entry"].([]any)); n != 1 {
		t.Fatalf("GET search found %d, want 1", n)
	}
	req, _ := http.NewRequest("POST", c.base+"/Patient/_search", strings.NewReader("family=liddell"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var post map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&post)
	if n := len(post["entry"].([]any)); n != 1 {
		t.Errorf("POST _search found %d, want 1 as GET", n)
	}
	// Unknown parameters: ignored with a warning, or 400 under strict handling.
	lenient := c.do("GET", "/Patient?nonsense=1", "")
	if lenient.status != 200 || !strings.Contains(string(lenient.body), "nonsense") {
		t.Errorf("lenient unknown parameter = %d %s", lenient.status, lenient.body)
	}
	wantOutcome(t, c.do("GET", "/Patient?nonsense=1", "", "Prefer", "handling=strict"), 400, "nonsense")
}

func TestConditionalCreate(t *testing.T) {
	c := newServer(t)
	first := c.do("POST", "/Patient", alice, "If-None-Exist", "identifier=urn:mrn|A1")
	if first.status != 201 {
		t.Fatalf("first conditional create = %d %s", first.status, first.body)
	}
	second := c.do("POST", "/Patient", alice, "If-None-Exist", "identifier=urn:mrn|A1")
	if second.status != 200 || second.json(t)["id"] != first.json(t)["id"] {
		t.Errorf("second conditional create = %d %s, want 200 with the existing resource", second.status, second.body)
	}
}

func TestCompartmentSearch(t *testing.T) {
	c := newServer(t)
	pid, _ := c.create("Patient", alice)
	other, _ := c.create("Patient", alice)
	obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"}}`
	c.create("Observation", fmt.Sprintf(obs, pid))
	c.create("Observation", fmt.Sprintf(obs, other))
	b := c.do("GET", "/Patient/"+pid+"/Observation", "").json(t)
	entries, _ := b["entry"].([]any)
	if len(entries) != 1 {
		t.Fatalf("compartment search found %d, want 1: %v", len(entries), b)
	}
	ref := entries[0].(map[string]any)["resource"].(map[string]any)["subject"].(map[string]any)["reference"]
	if ref != "Patient/"+pid {
		t.Errorf("compartment search returned an Observation of %v", ref)
	}
}

func TestMetadata(t *testing.T) {
	c := newServer(t)
	r := c.do("GET", "/metadata", "")
	m := r.json(t)
	if m["resourceType"] != "CapabilityStatement" || m["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata = %s", r.body)
	}
	rest := m["rest"].([]any)[0].(map[string]any)
	var patient map[string]any
	for _, res := range rest["resource"].([]any) {
		if res.(map[string]any)["type"] == "Patient" {
			patient = res.(map[string]any)
		}
	}
	if patient == nil || len(patient["searchParam"].([]any)) < 10 {
		t.Errorf("Patient capability = %v", patient)
	}
}

func TestSummaryAndElements(t *testing.T) {
	c := newServer(t)
	id, _ := c.create("Patient", strings.Replace(alice, `"gender":"female"`, `"gender":"female","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Alice</div>"}`, 1))
	c.create("Patient", alice)
	count := c.do("GET", "/Patient?_summary=count", "").json(t)
	if count["total"] != float64(2) || count["entry"] != nil {
		t.Errorf("_summary=count = %v, want total 2 and no entries", count)
	}
	b := c.do("GET", "/Patient?_elements=gender&_id="+id, "").json(t)
	res := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if res["gender"] != "female" || res["name"] != nil || !strings.Contains(fmt.Sprint(res["meta"]), "SUBSETTED") {
		t.Errorf("_elements=gender gave %v", res)
	}
	r := c.do("GET", "/Patient/"+id+"?_summary=data", "").json(t)
	if r["text"] != nil || r["name"] == nil || !strings.Contains(fmt.Sprint(r["meta"]), "SUBSETTED") {
		t.Errorf("read with _summary=data gave %v", r)
	}
	wantOutcome(t, c.do("GET", "/Patient/"+id+"?_summary=count", ""), 400, "_summary")
}

// A POST _search pages with GET links that continue the same search.
func TestPostSearchPaging(t *testing.T) {
	c := newServer(t)
	for range 3 {
		c.create("Patient", alice)
	}
	req, _ := http.NewRequest("POST", c.base+"/Patient/_search", strings.NewReader("family=liddell&_count=2"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var first map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	var next string
	for _, l := range first["link"].([]any) {
		if l.(map[string]any)["relation"] == "next" {
			next = l.(map[string]any)["url"].(string)
		}
	}
	if !strings.Contains(next, "/Patient?") {
		t.Fatalf("next link of a POST _search = %q, want a GET on the type", next)
	}
	page := c.do("GET", next, "")
	if page.status != 200 || len(page.json(t)["entry"].([]any)) != 1 {
		t.Errorf("second page = %d %s", page.status, page.body)
	}
}

// A system token may search inside a batch.
func TestBatchSearch(t *testing.T) {
	c := newServer(t)
	c.create("Patient", alice)
	r := c.do("POST", "", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?family=liddell"}}]}`)
	if r.status != 200 || !strings.Contains(string(r.body), `"status":"200`) || !strings.Contains(string(r.body), "Liddell") {
		t.Errorf("batch search = %d %s", r.status, r.body)
	}
}

// A POST _search form over the body limit is 413, as any other body over it.
func TestPostSearchOverTheBodyLimit(t *testing.T) {
	c := newServer(t)
	form := "name=" + strings.Repeat("a", 17<<20)
	r := c.do("POST", "/Patient/_search", form, "Content-Type", "application/x-www-form-urlencoded")
	wantOutcome(t, r, http.StatusRequestEntityTooLarge, "")
}
