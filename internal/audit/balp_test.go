package audit_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// recorder records events on one store and returns each stored AuditEvent.
type recorder struct {
	s  *sqlstore.Store
	tr *audit.Trail
}

func newRecorder(t *testing.T) *recorder {
	s := openStore(t)
	return &recorder{s: s, tr: openTrail(t, s, audit.Options{Source: audit.Source{Observer: "https://fhirgate.test", Site: "main"}})}
}

// auditEventOf records e and returns the stored AuditEvent as a generic map and as text.
func (r *recorder) auditEventOf(t *testing.T, e audit.Event) (map[string]any, string) {
	t.Helper()
	if err := r.tr.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	page, err := r.s.ListAuditEntries(context.Background(), sqlstore.AuditFilter{Limit: 1})
	if err != nil || len(page) != 1 {
		t.Fatalf("ListAuditEntries: %v", err)
	}
	raw := page[0].Event
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m, string(raw)
}

// codes collects "system|code" of every coding found under v.
func codes(v any) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if c, ok := x["code"].(string); ok {
				sys, _ := x["system"].(string)
				out = append(out, sys+"|"+c)
			}
			for _, vv := range x {
				walk(vv)
			}
		case []any:
			for _, vv := range x {
				walk(vv)
			}
		}
	}
	walk(v)
	return out
}

func has(list []string, want string) bool {
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

func TestBuildAuditEventBALP(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name     string
		event    audit.Event
		action   string
		outcome  string
		codes    []string // system|code that must appear somewhere
		profile  string
		contains []string
		absent   []string
	}{
		{
			name: "patient read",
			event: audit.Event{Time: at, Action: audit.ActionRead, Status: 200, ClientID: "app", Subject: "alice", FHIRUser: "Patient/p1",
				Roles: []string{"patient"}, SourceIP: "192.0.2.7", UserAgent: "curl/8", ResourceType: "Patient", Resources: []string{"Patient/p1"},
				Patients: []string{"Patient/p1"}, Count: 1, RequestID: "r-1", PurposeOfUse: []string{"TREAT"}},
			action: "R", outcome: "0",
			codes: []string{
				"http://terminology.hl7.org/CodeSystem/audit-event-type|rest",
				"http://hl7.org/fhir/restful-interaction|read",
				"http://dicom.nema.org/resources/ontology/DCM|110153",
				"http://dicom.nema.org/resources/ontology/DCM|110152",
				"http://terminology.hl7.org/CodeSystem/v3-ParticipationType|IRCP",
				"http://terminology.hl7.org/CodeSystem/object-role|1",
				"http://terminology.hl7.org/CodeSystem/object-role|4",
				"https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType|XrequestId",
				"http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT",
			},
			profile:  "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead",
			contains: []string{`"recorded":"2026-11-23T12:00:00.123456Z"`, `"reference":"Patient/p1"`, `"address":"192.0.2.7"`, `"valueString":"curl/8"`, `"value":"r-1"`},
		},
		{
			name: "denied search with credentials in the query",
			event: audit.Event{Time: at, Action: audit.ActionSearchType, Status: 403, Reasons: []string{"scope-missing"}, ClientID: "app",
				ResourceType: "Observation", Query: "patient=p2&code=1234-5&access_token=SECRET&client_secret=S2", Count: 0},
			action: "E", outcome: "4",
			codes: []string{
				"http://hl7.org/fhir/restful-interaction|search-type",
				"http://terminology.hl7.org/CodeSystem/object-role|24",
				"https://fhirgate.dev/fhir/CodeSystem/audit-action|search-type",
			},
			profile:  "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Query",
			contains: []string{`"valueCode":"denied"`, `"valueCode":"scope-missing"`, `"valueInteger":403`, `"outcomeDesc":"denied: scope-missing"`},
			absent:   []string{"SECRET", "S2", "access_token"},
		},
		{
			name:    "failed login",
			event:   audit.Event{Time: at, Action: audit.ActionLogin, Outcome: audit.OutcomeDenied, Subject: "alice", SourceIP: "192.0.2.9", Reasons: []string{"bad-password"}},
			action:  "E",
			outcome: "4",
			codes:   []string{"http://dicom.nema.org/resources/ontology/DCM|110114", "http://dicom.nema.org/resources/ontology/DCM|110122"},
		},
		{
			name:     "token issued",
			event:    audit.Event{Time: at, Action: audit.ActionTokenIssued, ClientID: "app", Subject: "alice", TokenID: "jti-1", Patients: []string{"p1"}},
			action:   "E",
			outcome:  "0",
			codes:    []string{"urn:ihe:event-type-code|ITI-71", "https://fhirgate.dev/fhir/CodeSystem/audit-action|token-issued"},
			contains: []string{`"valueString":"jti-1"`},
		},
		{
			name:     "break-glass read",
			event:    audit.Event{Time: at, Action: audit.ActionRead, Status: 200, Subject: "drsmith", BreakGlass: true, Patients: []string{"p3"}},
			action:   "R",
			outcome:  "0",
			codes:    []string{"http://terminology.hl7.org/CodeSystem/v3-ActReason|ETREAT"},
			contains: []string{`"url":"breakGlass","valueBoolean":true`},
		},
		{
			name:    "server error on operation",
			event:   audit.Event{Time: at, Action: audit.ActionOperation, Operation: "$export", Status: 500, ClientID: "bulk"},
			action:  "E",
			outcome: "8",
			codes:   []string{"https://fhirgate.dev/fhir/CodeSystem/operation|export"},
		},
	}
	r := newRecorder(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, raw := r.auditEventOf(t, tc.event)
			if m["resourceType"] != "AuditEvent" || m["action"] != tc.action || m["outcome"] != tc.outcome {
				t.Errorf("resourceType, action, outcome = %v, %v, %v; want AuditEvent, %s, %s", m["resourceType"], m["action"], m["outcome"], tc.action, tc.outcome)
			}
			if id, _ := m["id"].(string); len(id) != 32 {
				t.Errorf("id = %q, want 32 hex characters", id)
			}
			all := codes(m)
			for _, c := range tc.codes {
				if !has(all, c) {
					t.Errorf("coding %s missing; have %v", c, all)
				}
			}
			if tc.profile != "" && !strings.Contains(raw, `"profile":["`+tc.profile+`"]`) {
				t.Errorf("profile %s missing in %s", tc.profile, raw)
			}
			for _, s := range tc.contains {
				if !strings.Contains(raw, s) {
					t.Errorf("AuditEvent lacks %s: %s", s, raw)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(raw, s) {
					t.Errorf("AuditEvent contains %q: %s", s, raw)
				}
				// the query is base64 inside the entity: check the decoded form too
				if q := queryOf(m); strings.Contains(q, s) {
					t.Errorf("recorded query %q contains %q", q, s)
				}
			}
		})
	}
}

func queryOf(m map[string]any) string {
	ents, _ := m["entity"].([]any)
	for _, e := range ents {
		if q, ok := e.(map[string]any)["query"].(string); ok {
			b, _ := base64.StdEncoding.DecodeString(q)
			return string(b)
		}
	}
	return ""
}

func TestOneEventListsEveryResource(t *testing.T) {
	var refs []string
	for i := range 250 {
		refs = append(refs, "Observation/o"+itoa(i))
	}
	m, _ := newRecorder(t).auditEventOf(t, audit.Event{Action: audit.ActionSearchType, Status: 200, ResourceType: "Observation", Resources: refs,
		Patients: []string{"Patient/a", "b", "Patient/a"}, Count: 250})
	ents := m["entity"].([]any)
	var data, patients int
	for _, e := range ents {
		switch codes(e.(map[string]any)["role"])[0] {
		case "http://terminology.hl7.org/CodeSystem/object-role|4":
			data++
		case "http://terminology.hl7.org/CodeSystem/object-role|1":
			patients++
		}
	}
	if data != 250 || patients != 2 {
		t.Errorf("entities: %d data, %d patients; want 250, 2", data, patients)
	}
}

func TestScrubQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"?name=smith", "name=smith"},
		{"patient=1&access_token=x&Client_Secret=y&code=1234-5", "code=1234-5&patient=1"},
		{"b=2&a=1", "a=1&b=2"},
		{"a=%zz", "_unparsable=5"},
	}
	for _, tc := range tests {
		if got := audit.ScrubQuery(tc.in); got != tc.want {
			t.Errorf("ScrubQuery(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzScrubQuery(f *testing.F) {
	for _, s := range []string{"patient=1&access_token=x", "code=1;a=2", "%", "refresh_token=a&token=b&x=%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		out := audit.ScrubQuery(q)
		vals, err := url.ParseQuery(out)
		if err != nil {
			t.Fatalf("ScrubQuery(%q) = %q, which does not parse: %v", q, out, err)
		}
		for k := range vals {
			switch strings.ToLower(k) {
			case "access_token", "refresh_token", "client_secret", "password", "token", "client_assertion":
				t.Fatalf("ScrubQuery(%q) kept %q", q, k)
			}
		}
	})
}
