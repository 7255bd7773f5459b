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
	present, err := demo.Present(ctx, a.store)
	if err != nil {
		return err
	}
	if present {
		fmt.Fprintf(out, "demo data already in %s\n", a.cfg.DataDir)
		return nil
	}
	start := time.Now()
	sum, err := demo.Load(ctx, a.store, demo.Options{Patients: a.cfg.DemoPatients, Seed: 1, Now: time.Now()})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "demo data loaded in %s: %s\n  %d resources carry security labels\n  try: curl '%s/Patient?_count=5'\n",
		time.Since(start).Round(time.Millisecond), sum, sum.Labeled, a.cfg.FHIRBase())
	return nil
}
