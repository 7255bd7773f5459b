package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/fhirgate/fhirgate/internal/authserver"
)

func init() {
	register(command{name: "user", summary: "manage local users (user add | list | remove)", run: runUser})
}

// stdin is where --password-stdin reads; tests replace it.
var stdin io.Reader = os.Stdin

func runUser(ctx context.Context, e env) error {
	verb, e, err := subcommand(e, "add", "list", "remove")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	var spec authserver.UserSpec
	var roles, pwEnv string
	var pwStdin bool
	asJSON := fs.Bool("json", false, "print JSON")
	fs.StringVar(&spec.Username, "username", "", "user name")
	if verb == "add" {
		fs.StringVar(&spec.FHIRUser, "fhir-user", "", "the user's FHIR resource, e.g. Patient/123 or Practitioner/abc")
		fs.StringVar(&roles, "roles", "", "comma-separated roles: patient, clinician")
		fs.StringVar(&pwEnv, "password-env", "", "environment variable holding the password")
		fs.BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of standard input")
		fs.StringVar(&spec.PasswordHash, "password-hash", "", "an argon2id PHC string instead of a password")
	}
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	if verb != "list" && spec.Username == "" {
		return fmt.Errorf("%w: --username is required", errUsage)
	}
	if verb == "add" {
		switch {
		case pwEnv != "":
			v, ok := e.lookupEnv(pwEnv)
			if !ok || v == "" {
				return fmt.Errorf("%w: %s is not set", errUsage, pwEnv)
			}
			spec.Password = v
		case pwStdin:
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && err != io.EOF {
				return err
			}
			spec.Password = strings.TrimRight(line, "\r\n")
		}
		spec.Roles = splitList(roles)
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
	users := ae.srv.Users()
	switch verb {
	case "list":
		list, err := users.List(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(list)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tFHIR_USER\tROLES")
		for _, u := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, u.FHIRUser, strings.Join(u.Roles, ","))
		}
		return tw.Flush()
	case "remove":
		if err := users.Delete(ctx, spec.Username); err != nil {
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "removed user %s, their sessions and grants\n", spec.Username)
		return err
	}
	if err := users.Put(ctx, spec, "admin"); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "saved user %s\n", spec.Username)
	return err
}
