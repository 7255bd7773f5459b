package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/demo"
)

func init() {
	register(command{name: "seed", summary: "write the synthetic demo patients into the store", run: runSeed})
}

func runSeed(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fhirgate seed [flags]\n\n"+
			"Writes a deterministic synthetic data set (docs/demo-data.md): Patient/example-alice,\n"+
			"Patient/example-bob, Practitioner/example-smith and generated patients with their records.\n"+
			"The same --patients, --seed and --date write the same resources; seeding again makes new\n"+
			"versions of them, not duplicates.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var cf configFlags
	cf.register(fs)
	patients := fs.Int("patients", 100, "number of patients, example-alice and example-bob included")
	seed := fs.Int64("seed", 1, "seed of the generator: another seed gives other patients")
	day := fs.String("date", "", "reference date YYYY-MM-DD that the records lead up to (default: today, UTC)")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	if *patients < 1 || *patients > demo.MaxPatients {
		return fmt.Errorf("%w: --patients must be between 1 and %d", errUsage, demo.MaxPatients)
	}
	now := time.Now().UTC()
	if *day != "" {
		t, err := time.Parse(time.DateOnly, *day)
		if err != nil {
			return fmt.Errorf("%w: --date %q is not YYYY-MM-DD", errUsage, *day)
		}
		now = t
	}
	_, store, _, err := cf.openStore(ctx, e, fs)
	if err != nil {
		return err
	}
	defer store.Close()
	began := time.Now()
	sum, err := demo.Load(ctx, store, demo.Options{Patients: *patients, Seed: *seed, Now: now})
	if err != nil {
		return fmt.Errorf("seed: %w (after %d resources)", err, sum.Total)
	}
	_, err = fmt.Fprintf(e.stdout, "seeded %s in %s; %d carry security labels\n",
		sum, time.Since(began).Round(time.Millisecond), sum.Labeled)
	return err
}
