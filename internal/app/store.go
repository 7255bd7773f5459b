package app

import (
	"context"
	"log/slog"
	"path/filepath"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// OpenStore opens the configured store (running migrations). Every subcommand that touches data
// opens it this way, so they all work on the same store as serve.
func OpenStore(ctx context.Context, cfg *config.Config, reg *search.Registry, log *slog.Logger) (*sqlstore.Store, error) {
	dsn := cfg.Storage.DSN.Value()
	if cfg.Storage.Driver == "sqlite" && dsn == "" {
		dsn = filepath.Join(cfg.DataDir, "fhirgate.db")
	}
	return sqlstore.Open(ctx, sqlstore.Options{
		Driver:          cfg.Storage.Driver,
		DSN:             dsn,
		Registry:        reg,
		Logger:          log,
		MaxOpenConns:    cfg.Storage.MaxOpenConns,
		MaxIdleConns:    cfg.Storage.MaxIdleConns,
		ConnMaxLifetime: cfg.Storage.ConnMaxLifetime,
	})
}

// NewLogger builds the structured logger the config asks for.
func NewLogger(cfg config.Log, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
