package bundle_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// seedPatients stores Patient/a1 with identifier urn:sys|a, and Patient/d1 and d2 that share
// identifier urn:sys|dup.
func seedPatients(t *testing.T, b backend.Backend) {
	t.Helper()
	for id, ident := range map[string]string{"a1": "a", "d1": "dup", "d2": "dup"} {
		body := `{"resourceType":"Patient","id":"` + id + `","identifier":[{"system":"urn:sys","value":"` + ident + `"}]}`
		if _, _, err := b.Update(context.Background(), "Patient", id, []byte(body), backend.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConditionalTransactions(t *testing.T) {
	obsFor := func(ref string) string {
		return `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"` + ref + `"}},"request":{"method":"POST","url":"Observation"}}`
	}
	tests := []struct {
		name       string
		entries    []string
		wantStatus []string // per entry; nil when the transaction must fail
		failStatus int
		check      func(t *testing.T, b backend.Backend, resp *fhir.Bundle)
	}{
		{
			name: "conditional create finds the match and references resolve to it",
			entries: []string{
				`{"fullUrl":"urn:uuid:44444444-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","identifier":[{"system":"urn:sys","value":"a"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:sys|a"}}`,
				obsFor("urn:uuid:44444444-0000-4000-8000-000000000001"),
			},
			wantStatus: []string{"200 OK", "201 Created"},
			check: func(t *testing.T, b backend.Backend, resp *fhir.Bundle) {
				if got := idOf(t, resp.Entry[0]); got != "a1" {
					t.Errorf("conditional create located %s, want a1", got)
				}
				obs := mustRead(t, b, "Observation", idOf(t, resp.Entry[1]))
				if got := obs["subject"].(map[string]any)["reference"]; got != "Patient/a1" {
					t.Errorf("reference %v, want Patient/a1", got)
				}
				res, _ := b.Read(context.Background(), "Patient", "a1")
				if res.VersionID != 1 {
					t.Errorf("the matched Patient was written")
				}
			},
		},
		{
			name:       "conditional create with no match creates",
			entries:    []string{`{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"Patient?identifier=urn:sys|new"}}`},
			wantStatus: []string{"201 Created"},
		},
		{
			name:       "conditional create with several matches",
			entries:    []string{`{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:sys|dup"}}`},
			failStatus: http.StatusPreconditionFailed,
		},
		{
			name:       "conditional update of the one match",
			entries:    []string{`{"resource":{"resourceType":"Patient","active":true,"identifier":[{"system":"urn:sys","value":"a"}]},"request":{"method":"PUT","url":"Patient?identifier=urn:sys|a"}}`},
			wantStatus: []string{"200 OK"},
			check: func(t *testing.T, b backend.Backend, resp *fhir.Bundle) {
				if loc := resp.Entry[0].Response.Location; loc != "Patient/a1/_history/2" {
					t.Errorf("location %s", loc)
				}
			},
		},
		{
			name:    "conditional update with a URL system in the criteria",
			entries: []string{`{"resource":{"resourceType":"Patient","identifier":[{"system":"http://hospital.test/mrn","value":"7"}]},"request":{"method":"PUT","url":"Patient?identifier=http://hospital.test/mrn|7"}}`, `{"request":{"method":"DELETE","url":"http://fhir.test/fhir/Patient?identifier=http%3A%2F%2Fhospital.test%2Fmrn%7C7"}}`},
			// The DELETE runs first and matches nothing; the PUT then creates.
			wantStatus: []string{"201 Created", "204 No Content"},
		},
		{
			name:       "conditional update with no match creates with the body's id",
			entries:    []string{`{"resource":{"resourceType":"Patient","id":"fresh"},"request":{"method":"PUT","url":"Patient?identifier=urn:sys|none"}}`},
			wantStatus: []string{"201 Created"},
			check: func(t *testing.T, b backend.Backend, resp *fhir.Bundle) {
				if got := idOf(t, resp.Entry[0]); got != "fresh" {
					t.Errorf("created %s", got)
				}
			},
		},
		{
			name:       "conditional update whose body names another id",
			entries:    []string{`{"resource":{"resourceType":"Patient","id":"other"},"request":{"method":"PUT","url":"Patient?identifier=urn:sys|a"}}`},
			failStatus: http.StatusBadRequest,
		},
		{
			name:       "conditional update with several matches",
			entries:    []string{`{"resource":{"resourceType":"Patient"},"request":{"method":"PUT","url":"Patient?identifier=urn:sys|dup"}}`},
			failStatus: http.StatusPreconditionFailed,
		},
		{
			name:       "conditional delete",
			entries:    []string{`{"request":{"method":"DELETE","url":"Patient?identifier=urn:sys|a"}}`, `{"request":{"method":"DELETE","url":"Patient?identifier=urn:sys|none"}}`},
			wantStatus: []string{"204 No Content", "204 No Content"},
			check: func(t *testing.T, b backend.Backend, resp *fhir.Bundle) {
				if _, err := b.Read(context.Background(), "Patient", "a1"); !errors.Is(err, fhir.ErrGone) {
					t.Errorf("Patient/a1: %v, want gone", err)
				}
			},
		},
		{
			name:       "conditional delete with several matches",
			entries:    []string{`{"request":{"method":"DELETE","url":"Patient?identifier=urn:sys|dup"}}`},
			failStatus: http.StatusPreconditionFailed,
		},
		{
			name:       "conditional reference",
			entries:    []string{obsFor("Patient?identifier=urn:sys|a")},
			wantStatus: []string{"201 Created"},
			check: func(t *testing.T, b backend.Backend, resp *fhir.Bundle) {
				obs := mustRead(t, b, "Observation", idOf(t, resp.Entry[0]))
				if got := obs["subject"].(map[string]any)["reference"]; got != "Patient/a1" {
					t.Errorf("reference %v", got)
				}
			},
		},
		{name: "conditional reference without a match", entries: []string{obsFor("Patient?identifier=urn:sys|none")}, failStatus: http.StatusPreconditionFailed},
		{name: "conditional reference with several matches", entries: []string{obsFor("Patient?identifier=urn:sys|dup")}, failStatus: http.StatusPreconditionFailed},
		{
			name:       "criteria with an unknown parameter are refused, not widened",
			entries:    []string{`{"request":{"method":"DELETE","url":"Patient?no-such-param=1"}}`},
			failStatus: http.StatusBadRequest,
		},
		{
			name:       "criteria with no search parameter",
			entries:    []string{`{"request":{"method":"DELETE","url":"Patient?_count=1"}}`},
			failStatus: http.StatusBadRequest,
		},
		{
			name:       "search sees the transaction's writes",
			entries:    []string{`{"request":{"method":"GET","url":"Patient?identifier=urn:sys|made"}}`, `{"resource":{"resourceType":"Patient","identifier":[{"system":"urn:sys","value":"made"}]},"request":{"method":"POST","url":"Patient"}}`},
			wantStatus: []string{"200 OK", "201 Created"},
			check: func(t *testing.T, b backend.Backend, resp *fhir.Bundle) {
				var set fhir.Bundle
				if err := json.Unmarshal(resp.Entry[0].Resource, &set); err != nil {
					t.Fatal(err)
				}
				if set.Type != "searchset" || len(set.Entry) != 1 || set.Entry[0].Search.Mode != "match" ||
					!strings.HasSuffix(set.Entry[0].FullURL, "/Patient/"+idOf(t, resp.Entry[1])) {
					t.Errorf("searchset %s", resp.Entry[0].Resource)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, s := newProcessor(t)
			seedPatients(t, s)
			before := countVersions(t, s)
			body := `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(tc.entries, ",") + `]}`
			resp, err := p.Process(context.Background(), []byte(body))
			if tc.wantStatus == nil {
				if got := statusOf(err); err == nil || got != tc.failStatus {
					t.Fatalf("status %d (%v), want %d", got, err, tc.failStatus)
				}
				if after := countVersions(t, s); after != before {
					t.Errorf("the failed transaction left %d versions", after-before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range tc.wantStatus {
				if got := resp.Entry[i].Response.Status; got != w {
					t.Errorf("entry %d: %q, want %q", i, got, w)
				}
			}
			if tc.check != nil {
				tc.check(t, s, resp)
			}
		})
	}
}

func TestConditionalWithoutParser(t *testing.T) {
	p, _ := newProcessor(t)
	p.Parse = nil
	resp, err := p.Process(context.Background(), []byte(`{"resourceType":"Bundle","type":"batch","entry":[
	 {"request":{"method":"GET","url":"Patient?name=x"}},
	 {"request":{"method":"DELETE","url":"Patient?name=x"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range resp.Entry {
		if e.Response.Status != "400 Bad Request" {
			t.Errorf("entry %d: %s", i, e.Response.Status)
		}
	}
}

func TestConditionalReferenceIsAuthorizedAsASearch(t *testing.T) {
	p, s := newProcessor(t)
	seedPatients(t, s)
	var asked []string
	p.Authorize = func(_ context.Context, i int, method, typ, id string, body []byte) error {
		asked = append(asked, method+" "+typ+" "+id)
		if method == http.MethodGet && typ == "Patient" {
			return fhir.Errorf(http.StatusForbidden, "forbidden", "no access to Patient")
		}
		return nil
	}
	before := countVersions(t, s)
	_, err := p.Process(context.Background(), []byte(`{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=urn:sys|a"}},"request":{"method":"POST","url":"Observation"}}]}`))
	if got := statusOf(err); got != http.StatusForbidden {
		t.Fatalf("status %d (%v), want 403", got, err)
	}
	if len(asked) != 1 || asked[0] != "GET Patient " {
		t.Errorf("asked %q", asked)
	}
	if countVersions(t, s) != before {
		t.Error("the denied transaction wrote")
	}
}
