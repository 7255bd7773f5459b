package audit_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func TestParseSearchAndPage(t *testing.T) {
	s := openStore(t)
	fill(t, s, 30, nil) // reads of Observation/o1..o30, patients p0..p2
	tr := openTrail(t, s, audit.Options{})
	for _, e := range []audit.Event{
		{Action: audit.ActionLogin, Status: 200, Subject: "alice", ClientID: "app"},
		{Action: audit.ActionAlert, Detail: "denied-burst", ClientID: "app"},
		{Action: audit.ActionBreakGlass, Status: 200, Subject: "alice", ClientID: "app", Patients: []string{"p1"}},
	} {
		if err := tr.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string, pageSize int) (int, int) {
		t.Helper()
		v, err := url.ParseQuery(q)
		if err != nil {
			t.Fatal(err)
		}
		sr, err := audit.ParseSearch(v)
		if err != nil {
			t.Fatalf("ParseSearch(%s): %v", q, err)
		}
		sr.Filter.Limit = pageSize
		n, pages := 0, 0
		for {
			got, cursor, err := sr.Page(context.Background(), s.ListAuditEntries, nil)
			if err != nil {
				t.Fatal(err)
			}
			n += len(got)
			pages++
			if cursor == 0 {
				return n, pages
			}
			sr.Filter.Cursor = cursor
		}
	}
	for _, tc := range []struct {
		q    string
		want int
	}{
		{"type=rest", 30},
		{"type=110114", 1},
		{"type=110113", 2},
		{"type=http://dicom.nema.org/resources/ontology/DCM|110113,rest", 32},
		{"type=http://terminology.hl7.org/CodeSystem/audit-event-type|rest", 30},
		{"entity=Observation/o7", 1},
		{"entity=Patient/p1", 11},
		{"entity=Patient/p1&patient=p1", 11},
		{"entity=Patient/p2&patient=p1", 0},
		{"type=rest&outcome=success&date=ge2026-11-23", 30},
	} {
		if n, _ := count(tc.q, 1000); n != tc.want {
			t.Errorf("%s: %d entries, want %d", tc.q, n, tc.want)
		}
		if n, _ := count(tc.q, 4); n != tc.want {
			t.Errorf("%s paged by 4: %d entries, want %d", tc.q, n, tc.want)
		}
	}
	// A rare unindexed match: pages come back short rather than scanning without bound.
	if n, pages := count("type=110114", 1); n != 1 || pages > 34 {
		t.Errorf("type=110114 by 1: %d entries in %d pages", n, pages)
	}
	for _, q := range []string{"type=", "type=x|rest", "type=42", "entity=Observation", "entity=/x", "type=rest&type=rest", "nope=1"} {
		v, _ := url.ParseQuery(q)
		if _, err := audit.ParseSearch(v); err == nil {
			t.Errorf("ParseSearch(%s) = nil error", q)
		}
	}
}

func TestDisclosureView(t *testing.T) {
	s := openStore(t)
	tr := openTrail(t, s, audit.Options{})
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	own := audit.Event{Time: at, Action: audit.ActionRead, Status: 200, ClientID: "ehr", Subject: "drsmith", FHIRUser: "Practitioner/9",
		Roles: []string{"clinician"}, SourceIP: "10.1.2.3", UserAgent: "Browser/1", TokenID: "jti-1", RequestID: "req-1",
		ResourceType: "Observation", Resources: []string{"Observation/o1"}, Patients: []string{"p1"}, Query: "x=1", Count: 1}
	mixed := own
	mixed.Action, mixed.Resources, mixed.Patients, mixed.Query = audit.ActionSearchType, []string{"Observation/o1", "Observation/o2"}, []string{"p1", "p2"}, "code=1"
	for _, e := range []audit.Event{own, mixed} {
		if err := tr.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := s.ListAuditEntries(context.Background(), sqlstore.AuditFilter{Patient: "p1", Ascending: true})
	if err != nil || len(entries) != 2 {
		t.Fatalf("entries = %d, %v", len(entries), err)
	}
	views, err := audit.DisclosureEntries(entries, "p1")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range views {
		got := string(v.Event)
		for _, leak := range []string{"10.1.2.3", "Browser/1", "jti-1", "req-1", "Patient/p2", "query", "network"} {
			if contains(got, leak) {
				t.Errorf("view %d shows %q: %s", i, leak, got)
			}
		}
		for _, keep := range []string{`"Patient/p1"`, `"drsmith"`, `"Practitioner/9"`, `"ehr"`, `"clinician"`, `"recorded"`} {
			if !contains(got, keep) {
				t.Errorf("view %d lacks %s: %s", i, keep, got)
			}
		}
	}
	if !contains(string(views[0].Event), "Observation/o1") || contains(string(views[1].Event), "Observation/") {
		t.Errorf("resources: own event %s; mixed event %s", views[0].Event, views[1].Event)
	}
	if string(entries[0].Event) == string(views[0].Event) {
		t.Error("DisclosureEntries changed nothing or changed the input")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
