package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func init() {
	register(command{name: "keys", summary: "list or rotate the token signing keys (keys list | keys rotate --purpose access|id|hmac)", run: runKeys})
}

// authEnv is the authorization server opened over the configured store, for the CLI.
type authEnv struct {
	store *sqlstore.Store
	keys  *keys.Manager
	srv   *authserver.Server
}

func (a *authEnv) Close() error { return a.store.Close() }

// openAuth opens the store, the signing keys and the authorization server of cfg, exactly as
// serve does, so that CLI changes land in the same database.
func openAuth(ctx context.Context, e env, cfg config.Config) (*authEnv, error) {
	log := app.NewLogger(cfg.Log, e.stderr)
	store, err := app.OpenStore(ctx, &cfg, nil, log)
	if err != nil {
		return nil, err
	}
	km, err := authserver.OpenKeys(ctx, store, cfg.Auth, cfg.DataDir, e.lookupEnv, nil, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	srv, err := authserver.New(ctx, authserver.Config{Issuer: cfg.Issuer(), FHIRBase: cfg.FHIRBase(), Store: store, Keys: km, Auth: cfg.Auth, Logger: log})
	if err != nil {
		store.Close()
		return nil, err
	}
	return &authEnv{store: store, keys: km, srv: srv}, nil
}

// subcommand splits "verb --flags" argument lists.
func subcommand(e env, verbs ...string) (string, env, error) {
	if len(e.args) == 0 || strings.HasPrefix(e.args[0], "-") {
		return "", e, fmt.Errorf("%w: expected one of %s", errUsage, strings.Join(verbs, ", "))
	}
	for _, v := range verbs {
		if e.args[0] == v {
			e.args = e.args[1:]
			return v, e, nil
		}
	}
	return "", e, fmt.Errorf("%w: unknown action %q (want %s)", errUsage, e.args[0], strings.Join(verbs, ", "))
}

func runKeys(ctx context.Context, e env) error {
	verb, e, err := subcommand(e, "list", "rotate")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("keys "+verb, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	purpose := fs.String("purpose", "", "key to rotate: access (ES256 access tokens), id (RS256 ID tokens) or hmac (code and refresh token secret)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, e.args); err != nil {
		return err
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
	switch verb {
	case "rotate":
		p := keys.Purpose(*purpose)
		if p != keys.PurposeAccess && p != keys.PurposeID && p != keys.PurposeHMAC {
			return fmt.Errorf("%w: --purpose must be access, id or hmac", errUsage)
		}
		kid, err := ae.keys.Rotate(ctx, p)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "rotated %s key: new kid %s; the previous key stays published for %s\n", p, kid, cfg.Auth.WithDefaults().KeyOverlap)
		return err
	default:
		return printKeys(e.stdout, ae.keys.List(), *asJSON)
	}
}

func printKeys(w io.Writer, list []keys.Info, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(list)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tPURPOSE\tALG\tCREATED\tRETIRED\tCURRENT\tPUBLISHED")
	for _, k := range list {
		retired := "-"
		if !k.RetiredAt.IsZero() {
			retired = k.RetiredAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\n", k.KID, k.Purpose, k.Alg, k.CreatedAt.Format(time.RFC3339), retired, k.Current, k.Published)
	}
	return tw.Flush()
}
