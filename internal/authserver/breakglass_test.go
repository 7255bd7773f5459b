package authserver_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// TestBreakGlassAuditTrail: an emergency access grant records a break-glass event (purpose BTG,
// flagged, naming the review item) that the break-glass detector turns into an alert, and
// opens the review item; a refused request (no reason) records neither.
func TestBreakGlassAuditTrail(t *testing.T) {
	e, rec := auditEnv(t, func(c *authserver.Config) {
		c.Security = &authserver.Security{Roles: config.DefaultRoles()}
	})
	redirect := e.appURL + "/callback"
	_, challenge := pkcePair()
	params := e.authParams("public-app", redirect, "openid fhirUser user/*.rs", challenge)
	params.Set("purpose_of_use", "BTG")

	loc, _ := e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW})
	if loc == nil || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("break-glass without a reason: %v", loc)
	}
	for _, ev := range rec.take() {
		if ev.Action == audit.ActionBreakGlass {
			t.Errorf("a refused break-glass was recorded as granted: %+v", ev)
		}
	}
	if items, _ := e.db.ListBreakGlass(context.Background(), "", 0); len(items) != 0 {
		t.Fatalf("review items after a refusal: %+v", items)
	}

	params.Set("break_glass_reason", "patient unresponsive, allergy history needed")
	loc, p := e.authorize(e.browser(), params, flowOpts{user: "drsmith", pw: drPW})
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("break-glass: %d %s", p.status, p.body)
	}
	ev := only(t, rec.take(), audit.ActionBreakGlass)
	items, err := e.db.ListBreakGlass(context.Background(), sqlstore.BreakGlassOpen, 0)
	if err != nil || len(items) != 1 {
		t.Fatalf("review items: %+v %v", items, err)
	}
	if !ev.BreakGlass || !slices.Equal(ev.PurposeOfUse, []string{"BTG"}) || ev.Subject != "drsmith" || ev.Outcome != audit.OutcomeSuccess ||
		!strings.Contains(ev.Detail, items[0].ID) || strings.Contains(ev.Detail, "unresponsive") {
		t.Errorf("break-glass event %+v (the reason stays in the review queue)", ev)
	}
	if alerts := (audit.BreakGlass{}).Observe(ev); len(alerts) != 1 || alerts[0].Detector != "break-glass" {
		t.Errorf("alerts %+v", alerts)
	}
	if items[0].Reason != "patient unresponsive, allergy history needed" || items[0].Username != "drsmith" {
		t.Errorf("item %+v", items[0])
	}
}
