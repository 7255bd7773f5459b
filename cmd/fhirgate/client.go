package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

func init() {
	register(command{name: "client", summary: "manage OAuth clients (client add | list | remove)", run: runClient})
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func runClient(ctx context.Context, e env) error {
	verb, e, err := subcommand(e, "add", "list", "remove")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("client "+verb, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	var m authserver.ClientMetadata
	var redirects stringList
	var grants, jwksFile, secretEnv string
	asJSON := fs.Bool("json", false, "print JSON")
	fs.StringVar(&m.ClientID, "id", "", "client_id")
	if verb == "add" {
		fs.StringVar(&m.ClientName, "name", "", "client_name")
		fs.Var(&redirects, "redirect-uri", "registered redirect URI (repeat for several); matched exactly")
		fs.StringVar(&m.TokenEndpointAuthMethod, "auth-method", "none", "none | client_secret_basic | client_secret_post | private_key_jwt")
		fs.StringVar(&grants, "grant-types", "authorization_code,refresh_token", "comma-separated grant types")
		fs.StringVar(&m.Scope, "scope", "", "space-separated scopes: the most the client may be granted")
		fs.StringVar(&m.JWKSURI, "jwks-uri", "", "JWKS URL of a private_key_jwt client")
		fs.StringVar(&jwksFile, "jwks-file", "", "file with the inline JWKS of a private_key_jwt client")
		fs.StringVar(&m.LaunchURL, "launch-url", "", "the app's SMART launch URL (EHR launcher)")
		fs.StringVar(&secretEnv, "secret-env", "", "environment variable holding the client secret; without it a secret is generated and printed once")
	}
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	if verb != "list" && m.ClientID == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
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
	clients := ae.srv.Clients()
	switch verb {
	case "list":
		list, err := clients.List(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(list)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CLIENT_ID\tNAME\tAUTH\tGRANTS\tSCOPE")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ClientID, c.ClientName, c.TokenEndpointAuthMethod, strings.Join(c.GrantTypes, ","), c.Scope)
		}
		return tw.Flush()
	case "remove":
		if err := clients.Delete(ctx, m.ClientID); err != nil {
			return err
		}
		_, err := fmt.Fprintf(e.stdout, "removed client %s and revoked its tokens\n", m.ClientID)
		return err
	}
	m.RedirectURIs = redirects
	m.GrantTypes = splitList(grants)
	if jwksFile != "" {
		data, err := os.ReadFile(jwksFile)
		if err != nil {
			return err
		}
		m.JWKS = data
	}
	secret, generated := "", false
	if secretEnv != "" {
		v, ok := e.lookupEnv(secretEnv)
		if !ok || v == "" {
			return fmt.Errorf("%w: %s is not set", errUsage, secretEnv)
		}
		secret = v
	} else if m.TokenEndpointAuthMethod == oauth.AuthClientSecretBasic || m.TokenEndpointAuthMethod == oauth.AuthClientSecretPost {
		secret, generated = authserver.NewSecret(), true
	}
	if err := clients.Put(ctx, m, secret, "admin"); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "saved client %s\n", m.ClientID)
	if generated {
		fmt.Fprintf(e.stdout, "client_secret: %s\n(shown once; only its digest is stored)\n", secret)
	}
	return nil
}
