package audit_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func TestListAuditEntries(t *testing.T) {
	s := openStore(t)
	fill(t, s, 30, nil) // events 1..30 one second apart from 12:00:01; patient p(i%3); client app
	tr := openTrail(t, s, audit.Options{})
	denied := audit.Event{Time: time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC), Action: audit.ActionRead, Status: 403, ClientID: "evil", SourceIP: "10.9.9.9"}
	for range 3 {
		if err := tr.Record(context.Background(), denied); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		f    sqlstore.AuditFilter
		want int
	}{
		{"all", sqlstore.AuditFilter{Limit: 1000}, 33},
		{"patient", sqlstore.AuditFilter{Patient: "p1", Limit: 1000}, 10},
		{"agent client", sqlstore.AuditFilter{Agent: "evil"}, 3},
		{"agent user", sqlstore.AuditFilter{Agent: "alice"}, 30},
		{"agent fhirUser", sqlstore.AuditFilter{Agent: "Patient/p1"}, 30},
		{"outcome", sqlstore.AuditFilter{Outcome: "denied"}, 3},
		{"time range", sqlstore.AuditFilter{Since: base.Add(5 * time.Second), Until: base.Add(10 * time.Second)}, 5},
		{"patient and time", sqlstore.AuditFilter{Patient: "p0", Since: base.Add(10 * time.Second)}, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListAuditEntries(context.Background(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("ListAuditEntries(%+v) returned %d, want %d", tc.f, len(got), tc.want)
			}
		})
	}
	// Keyset paging visits every entry once, in order, both ways, with and without a time range
	// (which pages in recorded order).
	for _, tc := range []struct {
		asc   bool
		since time.Time
	}{{false, time.Time{}}, {true, time.Time{}}, {false, base}, {true, base}} {
		asc := tc.asc
		var seen []int64
		f := sqlstore.AuditFilter{Limit: 7, Ascending: asc, Since: tc.since}
		for {
			page, err := s.ListAuditEntries(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				seen = append(seen, e.Seq)
			}
			if len(page) < f.Limit {
				break
			}
			f.Cursor = page[len(page)-1].Seq
		}
		if len(seen) != 33 {
			t.Fatalf("paging (ascending %v) saw %d entries, want 33", asc, len(seen))
		}
		for i := 1; i < len(seen); i++ {
			if (seen[i] > seen[i-1]) != asc {
				t.Fatalf("paging (ascending %v) out of order: %v", asc, seen)
			}
		}
	}
	one, err := s.ListAuditEntries(context.Background(), sqlstore.AuditFilter{Limit: 1})
	if err != nil || len(one) != 1 {
		t.Fatal(err)
	}
	got, err := s.GetAuditEntry(context.Background(), one[0].ID)
	if err != nil || got.Seq != one[0].Seq {
		t.Errorf("GetAuditEntry(%q) = %d, %v", one[0].ID, got.Seq, err)
	}
	b, err := audit.SearchBundle(one, "https://x/fhir", "https://x/fhir/AuditEvent", "")
	if err != nil || !json.Valid(b) {
		t.Errorf("SearchBundle = %s, %v", b, err)
	}
}

func TestFilterFromQuery(t *testing.T) {
	tests := []struct {
		q     string
		ok    bool
		check func(f sqlstore.AuditFilter) bool
	}{
		{"patient=Patient/p1&agent=app&outcome=denied&_count=10", true, func(f sqlstore.AuditFilter) bool {
			return f.Patient == "p1" && f.Agent == "app" && f.Outcome == "denied" && f.Limit == 10
		}},
		{"date=ge2026-11-01&date=lt2026-11-02", true, func(f sqlstore.AuditFilter) bool {
			return f.Since.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) && f.Until.Equal(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
		}},
		{"date=le2026-11-01", true, func(f sqlstore.AuditFilter) bool { return f.Until.Equal(time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)) }},
		{"_sort=date&_cursor=5&subtype=login", true, func(f sqlstore.AuditFilter) bool { return f.Ascending && f.Cursor == 5 && f.Action == "login" }},
		{"date=2026-11-01", false, nil},
		{"outcome=0", false, nil},
		{"patient=Group/1", false, nil},
		{"_count=-1", false, nil},
		{"name=x", false, nil},
		{"agent=a&agent=b", false, nil},
	}
	for _, tc := range tests {
		q, _ := url.ParseQuery(tc.q)
		f, err := audit.FilterFromQuery(q)
		if (err == nil) != tc.ok {
			t.Errorf("FilterFromQuery(%q) error = %v, want ok %v", tc.q, err, tc.ok)
			continue
		}
		if tc.ok && !tc.check(f) {
			t.Errorf("FilterFromQuery(%q) = %+v", tc.q, f)
		}
	}
}

func FuzzFilterFromQuery(f *testing.F) {
	for _, s := range []string{"patient=p1", "date=ge2026-01-01T00:00:00Z&date=lt2026-01-02", "_count=5&_cursor=9", "outcome=success&_sort=-date"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		flt, err := audit.FilterFromQuery(q)
		if err != nil {
			return
		}
		if flt.Limit < 0 || flt.Limit > 1000 || flt.Cursor < 0 {
			t.Fatalf("FilterFromQuery(%q) = %+v", s, flt)
		}
		if flt.Outcome != "" && !audit.Outcome(flt.Outcome).Valid() {
			t.Fatalf("FilterFromQuery(%q) accepted outcome %q", s, flt.Outcome)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(`{"seq":1,"head":"` + string(make([]byte, 0)) + `00000000000000000000000000000000000000000000000000000000000000ff","time":"2026-11-23T12:00:00Z","origin":"x"}`))
	f.Add([]byte(`{"seq":-1}`))
	f.Add([]byte(`{"seq":1,"head":"zz","time":"2026-11-23T12:00:00Z","extra":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := audit.ParseCheckpoint(b)
		if err != nil {
			return
		}
		if c.Seq <= 0 || len(c.Head) != 64 || c.Time.IsZero() {
			t.Fatalf("ParseCheckpoint(%q) accepted %+v", b, c)
		}
	})
}
