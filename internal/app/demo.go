package app

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/fhirgate/fhirgate/internal/demo"
)

// LoadDemo loads the demo data set when the store does not hold it yet, and prints what is there.
func (a *App) LoadDemo(ctx context.Context, out io.Writer) error {
	if a.cfg.Upstream.URL != "" {
		// Proxy mode: the FHIR data lives upstream; only the demo accounts are local.
		fmt.Fprintf(out, "proxy mode: the demo data set is not loaded here; load it into the upstream FHIR server (%s)\n", a.cfg.Upstream.URL)
		a.printDemoLogins(out)
		return nil
	}
	present, err := demo.Present(ctx, a.store)
	if err != nil {
		return err
	}
	defer a.printDemoLogins(out)
	if present {
		fmt.Fprintf(out, "demo data already in %s\n", a.cfg.DataDir)
		return nil
	}
	start := time.Now()
	sum, err := demo.Load(ctx, a.store, demo.Options{Patients: a.cfg.DemoPatients, Seed: 1, Now: time.Now()})
	if err != nil {
		return err
	}
	if err := loadDemoConsents(ctx, a.store, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo data loaded in %s: %s\n  %d resources carry security labels, %d patients have privacy Consents\n  try: curl '%s/Patient?_count=5'\n",
		time.Since(start).Round(time.Millisecond), sum, sum.Labeled, len(demoConsents), a.cfg.FHIRBase())
	return nil
}

// printDemoLogins tells a person how to try a SMART flow against the demo.
func (a *App) printDemoLogins(out io.Writer) {
	if a.demo == nil {
		return
	}
	fmt.Fprintf(out, "demo SMART app: %s  (open it, press Launch, sign in as alice)\n", a.demoAppURL())
	fmt.Fprintf(out, `demo logins (for this demo only):
  patient:   alice / %s   (Patient/%s)
  patient:   bob / %s     (Patient/%s)
  clinician: drsmith / %s (Practitioner/%s), EHR launcher at %s/ehr
  psychiatrist: drnovak / %s (Practitioner/%s; behavioral-health clearance)
demo clients:
  %s (public, PKCE), redirect URIs %v
  %s (confidential, client_secret_basic, secret %s)
`, demoPatientPassword, demo.AlicePatientID, demoPatient2Password, demo.BobPatientID,
		demoClinicianPassword, demo.SmithPractitioner, a.cfg.Issuer(), demoPsychPassword, demoPsychiatrist,
		demoClientID, a.demo.clients[0].RedirectURIs, demoServiceClientID, demoServiceSecret)
}
