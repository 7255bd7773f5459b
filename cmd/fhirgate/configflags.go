package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// configFlags are the flags every subcommand that touches data shares, so that each works on the
// same store as serve.
type configFlags struct {
	file      string
	addr      string
	baseURL   string
	dataDir   string
	adminAddr string
	driver    string
	dsn       string
}

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "config", "", "YAML config file (env FHIRGATE_CONFIG)")
	fs.StringVar(&c.addr, "addr", "", "listen address of the public server (env FHIRGATE_ADDR)")
	fs.StringVar(&c.baseURL, "base-url", "", "public base URL; the FHIR base is {base-url}/fhir (env FHIRGATE_BASE_URL)")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory of the embedded store and keys (env FHIRGATE_DATA_DIR)")
	fs.StringVar(&c.adminAddr, "admin-addr", "", "listen address of the admin API (env FHIRGATE_ADMIN_ADDR)")
	fs.StringVar(&c.driver, "storage-driver", "", "sqlite or postgres (env FHIRGATE_STORAGE_DRIVER)")
	fs.StringVar(&c.dsn, "storage-dsn", "", "PostgreSQL connection string (env FHIRGATE_STORAGE_DSN)")
}

// load layers defaults, the config file, FHIRGATE_* variables and flags, in that order, then
// validates. fs must have been parsed; only flags set explicitly override.
func (c *configFlags) load(e env, fs *flag.FlagSet) (config.Config, error) {
	cfg := config.Default()
	file := c.file
	if file == "" {
		file, _ = e.lookupEnv("FHIRGATE_CONFIG")
	}
	if file != "" {
		if err := config.LoadFile(file, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := config.ApplyEnv(&cfg, e.lookupEnv); err != nil {
		return cfg, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	apply := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	apply("addr", &cfg.Addr, c.addr)
	apply("base-url", &cfg.BaseURL, c.baseURL)
	apply("data-dir", &cfg.DataDir, c.dataDir)
	apply("admin-addr", &cfg.AdminAddr, c.adminAddr)
	apply("storage-driver", &cfg.Storage.Driver, c.driver)
	if set["storage-dsn"] {
		cfg.Storage.DSN = config.Secret(c.dsn)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// parseFlags parses args, turning -h into flag.ErrHelp after the usage is printed.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

// openStore loads the configuration and opens its store, as serve does, for the subcommands that
// work on the data.
func (c *configFlags) openStore(ctx context.Context, e env, fs *flag.FlagSet) (config.Config, *sqlstore.Store, *slog.Logger, error) {
	cfg, err := c.load(e, fs)
	if err != nil {
		return cfg, nil, nil, err
	}
	log := app.NewLogger(cfg.Log, e.stderr)
	store, err := app.OpenStore(ctx, &cfg, nil, log)
	return cfg, store, log, err
}
