package app

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// App is a built fhirgate server.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	registry *search.Registry
	store    *sqlstore.Store
	fhir     *fhirapi.API
	public   *http.Server
	admin    *http.Server
	// Version is reported by /fhir/metadata.
	version string
}

// Options are the collaborators New does not build from the config.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Lookup reads environment variables (secrets named by the config); os.LookupEnv when nil.
	Lookup func(string) (string, bool)
}

// New builds every component from a validated configuration and opens the store.
func New(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	a := &App{cfg: cfg, log: opts.Logger, version: opts.Version}
	reg, err := search.DefaultRegistry()
	if err != nil {
		return nil, err
	}
	a.registry = reg
	a.store, err = OpenStore(ctx, &cfg, reg, a.log)
	if err != nil {
		return nil, err
	}
	if err := a.build(opts); err != nil {
		a.store.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) build(opts Options) error {
	validator, err := validate.New()
	if err != nil {
		return err
	}
	pageKey, err := a.pageKey(opts.Lookup)
	if err != nil {
		return err
	}
	a.fhir, err = fhirapi.New(fhirapi.Options{
		Backend:      a.store,
		Registry:     a.registry,
		Validator:    validator,
		BaseURL:      a.cfg.FHIRBase(),
		DefaultCount: a.cfg.FHIR.DefaultCount,
		MaxCount:     a.cfg.FHIR.MaxCount,
		PageKey:      pageKey,
		MaxBodyBytes: a.cfg.Gateway.MaxBodyBytes,
		Software:     "fhirgate",
		Version:      a.version,
		Logger:       a.log,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/fhir", a.fhir)
	mux.Handle("/fhir/", a.fhir)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	a.public = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	return nil
}

// pageKey reads the paging-link key from the configured variable (hex, at least 32 bytes), or
// makes a random one.
func (a *App) pageKey(lookup func(string) (string, bool)) ([]byte, error) {
	raw, ok := lookup(a.cfg.FHIR.PageTokenKeyEnv)
	if !ok || raw == "" {
		return nil, nil
	}
	key, err := hex.DecodeString(raw)
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s must be at least 32 bytes in hex", a.cfg.FHIR.PageTokenKeyEnv)
	}
	return key, nil
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := a.store.Ping(ctx); err != nil {
		a.log.Warn("not ready: database", "error", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "database: unavailable\n")
		return
	}
	_, _ = io.WriteString(w, "database: ok\n")
}

// Handler is the public HTTP handler (tests serve it with httptest).
func (a *App) Handler() http.Handler { return a.public.Handler }

// Store is the store the app runs on.
func (a *App) Store() *sqlstore.Store { return a.store }

// Serve listens on the configured addresses and serves until ctx is done, then shuts down
// gracefully. ready, if not nil, receives the bound public address once listening.
func (a *App) Serve(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- a.public.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	a.log.Info("fhirgate listening", "addr", ln.Addr().String(), "fhir_base", a.cfg.FHIRBase())
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = a.public.Shutdown(shutdownCtx)
	if a.admin != nil {
		err = errors.Join(err, a.admin.Shutdown(shutdownCtx))
	}
	return err
}

// Close releases the store.
func (a *App) Close() error { return a.store.Close() }
