package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/authserver"
)

func init() {
	register(command{name: "launch", summary: "create an EHR launch context for an app and print its launch URL", run: runLaunch})
}

func runLaunch(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("launch", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	var req authserver.LaunchRequest
	fs.StringVar(&req.ClientID, "client", "", "client_id of the app to launch")
	fs.StringVar(&req.Patient, "patient", "", "Patient id in context")
	fs.StringVar(&req.Encounter, "encounter", "", "Encounter id in context")
	fs.StringVar(&req.User, "user", "", "only this user may complete the launch")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	if req.ClientID == "" {
		return fmt.Errorf("%w: --client is required", errUsage)
	}
	cfg, err := cf.load(e, fs)
	if err != nil {
		return err
	}
	ae, err := openAuth(ctx, e, cfg)
	if err != nil {
		return err
	}
	defer ae.Close()
	l, err := ae.srv.CreateLaunch(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(l)
	}
	fmt.Fprintf(e.stdout, "launch: %s\n", l.Launch)
	if l.LaunchURL != "" {
		fmt.Fprintf(e.stdout, "launch_url: %s\n", l.LaunchURL)
	}
	fmt.Fprintf(e.stdout, "expires in %s; single use\n", cfg.Auth.WithDefaults().LaunchTTL)
	return nil
}
