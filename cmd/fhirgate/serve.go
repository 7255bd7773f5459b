package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/app"
)

func init() {
	register(command{name: "serve", summary: "run the authorization server and the FHIR API", run: runServe})
}

func runServe(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	demo := fs.Bool("demo", false, "load demo patients, users and a demo SMART app when the store is empty (env FHIRGATE_DEMO)")
	patients := fs.Int("demo-patients", 0, "number of synthetic patients for --demo (env FHIRGATE_DEMO_PATIENTS)")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	cfg, err := cf.load(e, fs)
	if err != nil {
		return err
	}
	if *demo {
		cfg.Demo = true
	}
	if *patients > 0 {
		cfg.DemoPatients = *patients
	}
	log := app.NewLogger(cfg.Log, e.stderr)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Version: versionString(), Lookup: e.lookupEnv})
	if err != nil {
		return err
	}
	defer a.Close()
	if cfg.Demo {
		if err := a.LoadDemo(ctx, e.stdout); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return a.Serve(ctx, func(addr string) {
		fmt.Fprintf(e.stdout, "fhirgate is serving on %s\n  FHIR base:        %s\n  SMART discovery:  %s/.well-known/smart-configuration\n  health:           %s/healthz\n",
			addr, cfg.FHIRBase(), cfg.FHIRBase(), cfg.Issuer())
	})
}
