package bundle_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

var (
	validatorOnce sync.Once
	validator     *validate.Validator
	validatorErr  error
)

func newValidator(t testing.TB) *validate.Validator {
	t.Helper()
	validatorOnce.Do(func() { validator, validatorErr = validate.New() })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

func newStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var fixedNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newProcessor(t testing.TB) (*bundle.Processor, *sqlstore.Store) {
	t.Helper()
	s := newStore(t)
	return &bundle.Processor{
		Backend:   s,
		Validator: newValidator(t),
		BaseURL:   "http://fhir.test/fhir",
		Parse:     parseFunc(t),
		Now:       func() time.Time { return fixedNow },
	}, s
}

// countVersions is the number of versions the store holds, across every resource.
func countVersions(t testing.TB, b backend.Backend) int {
	t.Helper()
	n := 0
	q := backend.HistoryQuery{Count: 1000}
	for {
		page, err := b.History(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Entries)
		if page.Next == "" {
			return n
		}
		q.Cursor = page.Next
	}
}

func mustRead(t testing.TB, b backend.Backend, typ, id string) map[string]any {
	t.Helper()
	res, err := b.Read(context.Background(), typ, id)
	if err != nil {
		t.Fatalf("read %s/%s: %v", typ, id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(res.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// idOf reads the id from a response location Type/id/_history/v.
func idOf(t testing.TB, e fhir.BundleEntry) string {
	t.Helper()
	parts := strings.Split(e.Response.Location, "/")
	if len(parts) != 4 || parts[2] != "_history" {
		t.Fatalf("location %q is not Type/id/_history/v", e.Response.Location)
	}
	return parts[1]
}

func statusOf(err error) int {
	s, _ := fhir.OutcomeFromError(err)
	return s
}

const patientA = `{"resourceType":"Patient","name":[{"family":"Alpha"}],"identifier":[{"system":"urn:sys","value":"a"}]}`

func TestTransactionCreatesAndResolvesReferences(t *testing.T) {
	p, s := newProcessor(t)
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0c3b1f8e-0000-4000-8000-000000000002","resource":{"resourceType":"Observation","status":"final",
	   "code":{"text":"weight"},"subject":{"reference":"urn:uuid:0c3b1f8e-0000-4000-8000-000000000001"},
	   "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:0c3b1f8e-0000-4000-8000-000000000001\">patient</a></div>"}},
	  "request":{"method":"POST","url":"Observation"}},
	 {"fullUrl":"urn:uuid:0c3b1f8e-0000-4000-8000-000000000001","resource":` + patientA + `,"request":{"method":"POST","url":"Patient"}}
	]}`
	resp, err := p.Process(context.Background(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Type != "transaction-response" || len(resp.Entry) != 2 {
		t.Fatalf("response type %q with %d entries", resp.Type, len(resp.Entry))
	}
	for i, e := range resp.Entry {
		if e.Response.Status != "201 Created" || e.Response.Etag != `W/"1"` || e.Response.LastModified == "" {
			t.Errorf("entry %d: response %+v", i, e.Response)
		}
		if !strings.HasPrefix(e.FullURL, "http://fhir.test/fhir/") {
			t.Errorf("entry %d: fullUrl %q", i, e.FullURL)
		}
	}
	if !strings.HasPrefix(resp.Entry[0].Response.Location, "Observation/") || !strings.HasPrefix(resp.Entry[1].Response.Location, "Patient/") {
		t.Fatalf("locations out of request order: %q, %q", resp.Entry[0].Response.Location, resp.Entry[1].Response.Location)
	}
	pid := idOf(t, resp.Entry[1])
	obs := mustRead(t, s, "Observation", idOf(t, resp.Entry[0]))
	if got := obs["subject"].(map[string]any)["reference"]; got != "Patient/"+pid {
		t.Errorf("subject.reference = %v, want Patient/%s", got, pid)
	}
	if div := obs["text"].(map[string]any)["div"].(string); !strings.Contains(div, `href="Patient/`+pid+`"`) {
		t.Errorf("narrative link not rewritten: %s", div)
	}
	if resp.Meta == nil || resp.Meta.LastUpdated != fixedNow.Format(fhir.TimeFormat) {
		t.Errorf("meta = %+v", resp.Meta)
	}
}

func TestTransactionOrderDeletePostPutGet(t *testing.T) {
	p, s := newProcessor(t)
	ctx := context.Background()
	if _, _, err := s.Update(ctx, "Patient", "old", []byte(`{"resourceType":"Patient","id":"old"}`), backend.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, "Patient", "p1", []byte(`{"resourceType":"Patient","id":"p1"}`), backend.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Listed in the reverse of the processing order: GET sees the PUT, and the DELETE of "old"
	// happens before the GET of it.
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"request":{"method":"GET","url":"Patient/p1"}},
	 {"request":{"method":"HEAD","url":"Patient/p1/_history/1"}},
	 {"resource":{"resourceType":"Patient","id":"p1","active":true},"request":{"method":"PUT","url":"Patient/p1","ifMatch":"W/\"1\""}},
	 {"resource":{"resourceType":"Patient","active":false},"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"DELETE","url":"Patient/old"}}
	]}`
	resp, err := p.Process(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"200 OK", "200 OK", "200 OK", "201 Created", "204 No Content"}
	for i, w := range want {
		if got := resp.Entry[i].Response.Status; got != w {
			t.Errorf("entry %d: status %q, want %q", i, got, w)
		}
	}
	var read map[string]any
	if err := json.Unmarshal(resp.Entry[0].Resource, &read); err != nil {
		t.Fatal(err)
	}
	if read["active"] != true || resp.Entry[0].Response.Etag != `W/"2"` {
		t.Errorf("GET did not see the PUT: %s etag %s", resp.Entry[0].Resource, resp.Entry[0].Response.Etag)
	}
	if resp.Entry[1].Resource != nil {
		t.Errorf("HEAD returned a resource")
	}
	if _, err := s.Read(ctx, "Patient", "old"); !errors.Is(err, fhir.ErrGone) {
		t.Errorf("Patient/old after the transaction: %v, want gone", err)
	}
}

func TestTransactionFailureLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	good := `{"fullUrl":"urn:uuid:11111111-0000-4000-8000-000000000001","resource":` + patientA + `,"request":{"method":"POST","url":"Patient"}}`
	goodObs := `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:11111111-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}`
	tests := []struct {
		name       string
		entries    []string
		authorize  bundle.AuthorizeFunc
		wantStatus int
		wantEntry  string
	}{
		{"invalid resource", []string{good, goodObs, `{"resource":{"resourceType":"Patient","birthDate":"not-a-date"},"request":{"method":"POST","url":"Patient"}}`}, nil, http.StatusUnprocessableEntity, "Bundle.entry[2]"},
		{"unknown element", []string{good, `{"resource":{"resourceType":"Patient","favouriteColour":"blue"},"request":{"method":"POST","url":"Patient"}}`}, nil, http.StatusUnprocessableEntity, "Bundle.entry[1]"},
		{"stale ifMatch", []string{good, `{"resource":{"resourceType":"Patient","id":"seed"},"request":{"method":"PUT","url":"Patient/seed","ifMatch":"W/\"7\""}}`}, nil, http.StatusPreconditionFailed, "Bundle.entry[1]"},
		{"create-only If-Match on a missing resource", []string{goodObs, good, `{"resource":{"resourceType":"Patient","id":"nope"},"request":{"method":"PUT","url":"Patient/nope","ifMatch":"1"}}`}, nil, http.StatusPreconditionFailed, "Bundle.entry[2]"},
		{"GET of a missing resource", []string{good, `{"request":{"method":"GET","url":"Patient/missing"}}`}, nil, http.StatusNotFound, "Bundle.entry[1]"},
		{"dangling urn reference", []string{good, `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:99999999-0000-4000-8000-000000000009"}},"request":{"method":"POST","url":"Observation"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"duplicate fullUrl", []string{good, good}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"same resource changed twice", []string{`{"resource":{"resourceType":"Patient","id":"twice"},"request":{"method":"PUT","url":"Patient/twice"}}`, `{"request":{"method":"DELETE","url":"Patient/twice"}}`}, nil, http.StatusBadRequest, "Bundle.entry[0]"},
		{"type mismatch", []string{good, `{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Observation"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"PUT id differs from URL", []string{good, `{"resource":{"resourceType":"Patient","id":"a"},"request":{"method":"PUT","url":"Patient/b"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"PATCH", []string{good, `{"request":{"method":"PATCH","url":"Patient/seed"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"unknown method", []string{good, `{"request":{"method":"TRACE","url":"Patient/seed"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"no request", []string{good, `{"resource":` + patientA + `}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"URL on another server", []string{good, `{"request":{"method":"GET","url":"http://evil.test/fhir/Patient/seed"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"DELETE of a whole type", []string{good, `{"request":{"method":"DELETE","url":"Patient"}}`}, nil, http.StatusBadRequest, "Bundle.entry[1]"},
		{"authorization denied", []string{good, goodObs}, func(_ context.Context, i int, method, typ, id string, body []byte) error {
			if typ == "Observation" {
				return fhir.Errorf(http.StatusForbidden, "forbidden", "not allowed to write Observation")
			}
			return nil
		}, http.StatusForbidden, "Bundle.entry[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newProcessor(t)
			p.Authorize = tc.authorize
			if _, _, err := s.Update(ctx, "Patient", "seed", []byte(`{"resourceType":"Patient","id":"seed"}`), backend.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			before := countVersions(t, s)
			body := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(tc.entries, ",") + `]}`
			resp, err := p.Process(ctx, []byte(body))
			if err == nil {
				t.Fatalf("transaction succeeded: %+v", resp)
			}
			if got := statusOf(err); got != tc.wantStatus {
				t.Errorf("status %d, want %d (%v)", got, tc.wantStatus, err)
			}
			var fe *fhir.Error
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Diagnostics, tc.wantEntry+":") {
				t.Errorf("error %v does not name %s", err, tc.wantEntry)
			}
			if after := countVersions(t, s); after != before {
				t.Errorf("the failed transaction left %d versions behind", after-before)
			}
			if _, err := s.Read(ctx, "Patient", "seed"); err != nil {
				t.Errorf("seed resource: %v", err)
			}
		})
	}
}

func TestBatchEntriesAreIndependent(t *testing.T) {
	p, s := newProcessor(t)
	ctx := context.Background()
	if _, _, err := s.Update(ctx, "Patient", "gone", []byte(`{"resourceType":"Patient","id":"gone"}`), backend.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, "Patient", "gone"); err != nil {
		t.Fatal(err)
	}
	body := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":` + patientA + `,"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","birthDate":"1999-99-99"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"kept"},"request":{"method":"PUT","url":"Patient/kept"}},
	 {"resource":{"resourceType":"Patient","id":"kept"},"request":{"method":"PUT","url":"Patient/kept","ifMatch":"W/\"5\""}},
	 {"request":{"method":"GET","url":"Patient/gone"}},
	 {"request":{"method":"GET","url":"Patient/never"}},
	 {"request":{"method":"DELETE","url":"Patient/never"}},
	 {"request":{"method":"GET","url":"Patient/kept/_history/1"}},
	 {"request":{"method":"GET","url":"Patient/kept","ifNoneMatch":"W/\"1\""}}
	]}`
	resp, err := p.Process(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Type != "batch-response" {
		t.Errorf("type %q", resp.Type)
	}
	want := []string{"201 Created", "422 Unprocessable Entity", "201 Created", "412 Precondition Failed", "410 Gone", "404 Not Found", "204 No Content", "200 OK", "304 Not Modified"}
	if len(resp.Entry) != len(want) {
		t.Fatalf("%d entries, want %d", len(resp.Entry), len(want))
	}
	for i, w := range want {
		e := resp.Entry[i]
		if e.Response.Status != w {
			t.Errorf("entry %d: status %q, want %q (outcome %s)", i, e.Response.Status, w, e.Response.Outcome)
		}
		failed := w[0] == '4'
		if failed != (len(e.Response.Outcome) > 0) {
			t.Errorf("entry %d: outcome %s", i, e.Response.Outcome)
		}
		if failed {
			var oo fhir.OperationOutcome
			if err := json.Unmarshal(e.Response.Outcome, &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Errorf("entry %d: outcome %s is not an OperationOutcome", i, e.Response.Outcome)
			}
		}
	}
	if _, err := s.Read(ctx, "Patient", idOf(t, resp.Entry[0])); err != nil {
		t.Errorf("the good entry next to a bad one was not stored: %v", err)
	}
}

func TestBundleRejected(t *testing.T) {
	p, _ := newProcessor(t)
	p.MaxEntries = 2
	entry := `{"request":{"method":"GET","url":"Patient/x"}}`
	tests := []struct {
		name, body string
		want       int
	}{
		{"not JSON", `nope`, http.StatusBadRequest},
		{"array", `[]`, http.StatusBadRequest},
		{"not a Bundle", `{"resourceType":"Patient"}`, http.StatusBadRequest},
		{"collection", `{"resourceType":"Bundle","type":"collection","entry":[]}`, http.StatusBadRequest},
		{"no type", `{"resourceType":"Bundle","entry":[]}`, http.StatusBadRequest},
		{"entry not an array", `{"resourceType":"Bundle","type":"batch","entry":{}}`, http.StatusBadRequest},
		{"too many entries", `{"resourceType":"Bundle","type":"batch","entry":[` + entry + `,` + entry + `,` + entry + `]}`, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Process(context.Background(), []byte(tc.body))
			if got := statusOf(err); got != tc.want {
				t.Errorf("status %d, want %d (%v)", got, tc.want, err)
			}
		})
	}
}

func TestEmptyTransaction(t *testing.T) {
	p, _ := newProcessor(t)
	resp, err := p.Process(context.Background(), []byte(`{"resourceType":"Bundle","type":"transaction"}`))
	if err != nil || resp.Type != "transaction-response" || len(resp.Entry) != 0 {
		t.Fatalf("%+v, %v", resp, err)
	}
}

func TestAuthorizeSeesResolvedEntries(t *testing.T) {
	p, _ := newProcessor(t)
	type call struct {
		index              int
		method, typ, id    string
		bodyHasResolvedRef bool
	}
	var calls []call
	p.Authorize = func(_ context.Context, i int, method, typ, id string, body []byte) error {
		calls = append(calls, call{i, method, typ, id, strings.Contains(string(body), `"Patient/`)})
		return nil
	}
	body := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:22222222-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}},
	 {"fullUrl":"urn:uuid:22222222-0000-4000-8000-000000000001","resource":` + patientA + `,"request":{"method":"POST","url":"Patient"}},
	 {"request":{"method":"DELETE","url":"Patient/zzz"}}
	]}`
	resp, err := p.Process(context.Background(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []call{
		{2, "DELETE", "Patient", "zzz", false},
		{0, "POST", "Observation", idOf(t, resp.Entry[0]), true},
		{1, "POST", "Patient", idOf(t, resp.Entry[1]), false},
	}
	if len(calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, calls[i], want[i])
		}
	}
}

func TestKeepIDsIsIdempotent(t *testing.T) {
	p, s := newProcessor(t)
	p.KeepIDs = true
	body := []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:33333333-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"33333333-0000-4000-8000-000000000001"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Observation","id":"obs-1","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:33333333-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}
	]}`)
	for round, want := range []string{"201 Created", "200 OK"} {
		resp, err := p.Process(context.Background(), body)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range resp.Entry {
			if e.Response.Status != want {
				t.Errorf("round %d entry %d: %q, want %q", round, i, e.Response.Status, want)
			}
		}
	}
	obs := mustRead(t, s, "Observation", "obs-1")
	if got := obs["subject"].(map[string]any)["reference"]; got != "Patient/33333333-0000-4000-8000-000000000001" {
		t.Errorf("reference %v", got)
	}
}

func patchEntry(url, ifMatch, patch string) string {
	im := ""
	if ifMatch != "" {
		im = `,"ifMatch":"` + strings.ReplaceAll(ifMatch, `"`, `\"`) + `"`
	}
	return `{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` +
		base64.StdEncoding.EncodeToString([]byte(patch)) + `"},"request":{"method":"PATCH","url":"` + url + `"` + im + `}}`
}

func TestPatchEntries(t *testing.T) {
	p, s := newProcessor(t)
	ctx := context.Background()
	if _, _, err := s.Update(ctx, "Patient", "pp", []byte(`{"resourceType":"Patient","id":"pp","name":[{"family":"Old"}]}`), backend.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	body := `{"resourceType":"Bundle","type":"batch","entry":[` + strings.Join([]string{
		patchEntry("Patient/pp", `W/"1"`, `[{"op":"replace","path":"/name/0/family","value":"New"},{"op":"add","path":"/active","value":true}]`),
		patchEntry("Patient/pp", `W/"1"`, `[{"op":"add","path":"/gender","value":"female"}]`),
		patchEntry("Patient/pp", "", `[{"op":"replace","path":"/id","value":"other"}]`),
		patchEntry("Patient/pp", "", `[{"op":"add","path":"/gender","value":"robot"}]`),
		patchEntry("Patient/pp", "", `[{"op":"test","path":"/active","value":false}]`),
		patchEntry("Patient/missing", "", `[{"op":"add","path":"/active","value":true}]`),
		`{"resource":{"resourceType":"Parameters","parameter":[]},"request":{"method":"PATCH","url":"Patient/pp"}}`,
	}, ",") + `]}`
	resp, err := p.Process(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"200 OK", "412 Precondition Failed", "422 Unprocessable Entity", "422 Unprocessable Entity", "422 Unprocessable Entity", "404 Not Found", "400 Bad Request"}
	for i, w := range want {
		if got := resp.Entry[i].Response.Status; got != w {
			t.Errorf("entry %d: %q, want %q (%s)", i, got, w, resp.Entry[i].Response.Outcome)
		}
	}
	pt := mustRead(t, s, "Patient", "pp")
	if pt["active"] != true || pt["name"].([]any)[0].(map[string]any)["family"] != "New" || pt["gender"] != nil {
		t.Errorf("patched patient %v", pt)
	}
	if m := pt["meta"].(map[string]any); m["versionId"] != "2" {
		t.Errorf("version %v", m["versionId"])
	}
}

func TestTransactionPatchResolvesReferences(t *testing.T) {
	p, s := newProcessor(t)
	ctx := context.Background()
	if _, _, err := s.Update(ctx, "Patient", "pq", []byte(`{"resourceType":"Patient","id":"pq"}`), backend.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	body := `{"resourceType":"Bundle","type":"transaction","entry":[` +
		patchEntry("Patient/pq", "", `[{"op":"add","path":"/managingOrganization","value":{"reference":"urn:uuid:55555555-0000-4000-8000-000000000001"}}]`) + `,
		{"fullUrl":"urn:uuid:55555555-0000-4000-8000-000000000001","resource":{"resourceType":"Organization","name":"Org"},"request":{"method":"POST","url":"Organization"}}]}`
	resp, err := p.Process(ctx, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	pt := mustRead(t, s, "Patient", "pq")
	if got := pt["managingOrganization"].(map[string]any)["reference"]; got != "Organization/"+idOf(t, resp.Entry[1]) {
		t.Errorf("reference %v", got)
	}
}
