package main

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
)

func init() {
	register(command{name: "migrate", summary: "apply pending database migrations and print the schema version", run: runMigrate})
}

// runMigrate opens the configured store, which applies every pending migration (serve does the
// same at start; on PostgreSQL instances starting at once wait for each other's migrations), and
// reports the schema version. Running it before rolling out a new version keeps the migration out
// of the servers' start.
func runMigrate(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	status := fs.Bool("status", false, "also list every migration with when it was applied")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	cfg, err := cf.load(e, fs)
	if err != nil {
		return err
	}
	// Each migration applied now is logged ("applied migration") on stderr.
	log := app.NewLogger(cfg.Log, e.stderr)
	store, err := app.OpenStore(ctx, &cfg, nil, log)
	if err != nil {
		return err
	}
	defer store.Close()
	version, err := store.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	migs, err := store.Migrations(ctx)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(e.stdout, "%s schema is at version %d (%d migrations)\n", store.Driver(), version, len(migs)); err != nil {
		return err
	}
	if !*status {
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tFILE\tAPPLIED")
	for _, m := range migs {
		applied := "pending"
		if !m.AppliedAt.IsZero() {
			applied = m.AppliedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, applied)
	}
	return tw.Flush()
}
