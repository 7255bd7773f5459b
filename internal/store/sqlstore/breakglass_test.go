package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// TestBreakGlassQueue: the review queue on SQLite, and on PostgreSQL when configured: items
// survive, list by status, close once with a decision, and never get a second decision.
func TestBreakGlassQueue(t *testing.T) {
	for _, driver := range sqlstore.DriversUnderTest() {
		t.Run(driver, func(t *testing.T) {
			ctx := context.Background()
			s := sqlstore.OpenTestStore(t, driver, sqlstore.Options{})
			t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for i, id := range []string{"bg1", "bg2"} {
				err := s.PutBreakGlass(ctx, sqlstore.BreakGlass{ID: id, CreatedAt: t0.Add(time.Duration(i) * time.Minute), Username: "drsmith",
					FHIRUser: "Practitioner/d1", ClientID: "app", Patient: "p1", Reason: "unconscious in the ER"})
				if err != nil {
					t.Fatal(err)
				}
			}
			open, err := s.ListBreakGlass(ctx, sqlstore.BreakGlassOpen, 0)
			if err != nil || len(open) != 2 || open[0].ID != "bg1" || open[0].Reason != "unconscious in the ER" || !open[0].CreatedAt.Equal(t0) || open[0].Status != sqlstore.BreakGlassOpen {
				t.Fatalf("open = %+v, %v", open, err)
			}
			if err := s.CloseBreakGlass(ctx, "bg1", "maybe", "po", "", t0); err == nil {
				t.Error("an unknown decision was accepted")
			}
			if err := s.CloseBreakGlass(ctx, "bg1", sqlstore.DecisionJustified, "privacy-officer", "ER record confirms", t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if err := s.CloseBreakGlass(ctx, "bg1", sqlstore.DecisionUnjustified, "someone-else", "", t0.Add(2*time.Hour)); !errors.Is(err, sqlstore.ErrBreakGlassClosed) {
				t.Errorf("second close: %v", err)
			}
			if err := s.CloseBreakGlass(ctx, "nope", sqlstore.DecisionJustified, "po", "", t0); !errors.Is(err, sqlstore.ErrBreakGlassNotFound) {
				t.Errorf("unknown item: %v", err)
			}
			got, err := s.GetBreakGlass(ctx, "bg1")
			if err != nil || got.Status != sqlstore.BreakGlassClosed || got.Decision != sqlstore.DecisionJustified || got.Reviewer != "privacy-officer" || !got.ClosedAt.Equal(t0.Add(time.Hour)) {
				t.Errorf("closed item = %+v, %v", got, err)
			}
			open, _ = s.ListBreakGlass(ctx, sqlstore.BreakGlassOpen, 0)
			all, _ := s.ListBreakGlass(ctx, "", 0)
			if len(open) != 1 || open[0].ID != "bg2" || len(all) != 2 {
				t.Errorf("after close: open %+v all %d", open, len(all))
			}
		})
	}
}
