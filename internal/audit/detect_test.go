package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func TestDetectors(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	denied := func(client, ip string, s int) audit.Event {
		return audit.Event{Time: t0.Add(time.Duration(s) * time.Second), Action: audit.ActionRead, Outcome: audit.OutcomeDenied, ClientID: client, SourceIP: ip}
	}
	loginFail := func(user, ip string, s int) audit.Event {
		return audit.Event{Time: t0.Add(time.Duration(s) * time.Second), Action: audit.ActionLogin, Outcome: audit.OutcomeDenied, Subject: user, SourceIP: ip}
	}
	reads := func(token string, s int, patients ...string) audit.Event {
		return audit.Event{Time: t0.Add(time.Duration(s) * time.Second), Action: audit.ActionRead, Outcome: audit.OutcomeSuccess, ClientID: "app", TokenID: token, Patients: patients}
	}
	type want struct {
		at  int // index of the event expected to raise
		key string
	}
	tests := []struct {
		name   string
		det    func() audit.Detector
		events []audit.Event
		want   []want
	}{
		{"denied burst fires at the threshold, once per window", func() audit.Detector { return audit.NewDeniedBurst(time.Minute, 3) },
			[]audit.Event{denied("a", "", 0), denied("a", "", 10), denied("a", "", 20), denied("a", "", 30), denied("a", "", 40)},
			[]want{{2, "client:a"}}},
		{"denied burst fires again after the window", func() audit.Detector { return audit.NewDeniedBurst(time.Minute, 3) },
			[]audit.Event{denied("a", "", 0), denied("a", "", 1), denied("a", "", 2), denied("a", "", 100), denied("a", "", 101), denied("a", "", 102)},
			[]want{{2, "client:a"}, {5, "client:a"}}},
		{"denied events spread out do not fire", func() audit.Detector { return audit.NewDeniedBurst(time.Minute, 3) },
			[]audit.Event{denied("a", "", 0), denied("a", "", 40), denied("a", "", 80), denied("a", "", 120)},
			nil},
		{"denied burst by IP across clients", func() audit.Detector { return audit.NewDeniedBurst(time.Minute, 3) },
			[]audit.Event{denied("a", "1.2.3.4", 0), denied("b", "1.2.3.4", 1), denied("c", "1.2.3.4", 2)},
			[]want{{2, "ip:1.2.3.4"}}},
		{"allowed requests are not counted", func() audit.Detector { return audit.NewDeniedBurst(time.Minute, 2) },
			[]audit.Event{reads("t", 0, "p"), reads("t", 1, "p"), denied("app", "", 2)},
			nil},
		{"login failures by user", func() audit.Detector { return audit.NewLoginFailures(5*time.Minute, 3) },
			[]audit.Event{loginFail("alice", "", 0), loginFail("alice", "", 60), loginFail("bob", "", 61), loginFail("alice", "", 120)},
			[]want{{3, "user:alice"}}},
		{"successful login does not count", func() audit.Detector { return audit.NewLoginFailures(5*time.Minute, 2) },
			[]audit.Event{loginFail("alice", "", 0), {Time: t0, Action: audit.ActionLogin, Outcome: audit.OutcomeSuccess, Subject: "alice"}},
			nil},
		{"break-glass", func() audit.Detector { return audit.BreakGlass{} },
			[]audit.Event{reads("t", 0, "p"), {Time: t0, Action: audit.ActionBreakGlass, Subject: "drsmith"}, {Time: t0, Action: audit.ActionRead, BreakGlass: true, FHIRUser: "Practitioner/1"}},
			[]want{{1, "user:drsmith"}, {2, "user:Practitioner/1"}}},
		{"one token reading many patients", func() audit.Detector { return audit.NewPatientSpread(time.Hour, 4) },
			[]audit.Event{reads("t1", 0, "p1"), reads("t1", 1, "p1", "p2"), reads("t2", 2, "p9"), reads("t1", 3, "p3"), reads("t1", 4, "p4"), reads("t1", 5, "p5")},
			[]want{{4, "token:t1"}}},
		{"patients outside the window are forgotten", func() audit.Detector { return audit.NewPatientSpread(time.Minute, 3) },
			[]audit.Event{reads("t1", 0, "p1"), reads("t1", 100, "p2"), reads("t1", 200, "p3"), reads("t1", 201, "p3")},
			nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.det()
			var got []want
			for i, e := range tc.events {
				for _, a := range d.Observe(e) {
					got = append(got, want{i, a.Key})
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("alerts = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("alert %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestAlertsAreRecordedAndExported(t *testing.T) {
	s := openStore(t)
	col := &collectSink{}
	alerts := make(chan audit.Alert, 10)
	tr := openTrail(t, s, audit.Options{
		Sinks:     []audit.Sink{col},
		Detectors: []audit.Detector{audit.NewDeniedBurst(time.Minute, 5), audit.BreakGlass{}},
		OnAlert:   func(a audit.Alert) { alerts <- a },
	})
	for range 5 {
		if err := tr.Record(context.Background(), audit.Event{Action: audit.ActionSearchType, Status: 403, ClientID: "scraper", SourceIP: "10.6.6.6"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Record(context.Background(), audit.Event{Action: audit.ActionBreakGlass, Subject: "drsmith", Patients: []string{"p1"}}); err != nil {
		t.Fatal(err)
	}
	// client, IP and break-glass alerts
	for range 3 {
		<-alerts
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListAuditEntries(context.Background(), sqlstore.AuditFilter{Action: string(audit.ActionAlert)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("%d alert entries in the store, want 3", len(got))
	}
	var exported int
	for _, e := range col.entries {
		if e.Event.Action == audit.ActionAlert {
			exported++
		}
	}
	if exported != 3 {
		t.Errorf("%d alerts exported to the sink, want 3", exported)
	}
	if st := tr.Stats(); st.Alerts != 3 {
		t.Errorf("Stats.Alerts = %d, want 3", st.Alerts)
	}
	verifyOK(t, s, nil, 9)
}
