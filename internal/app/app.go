package app

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/adminapi"
	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/explain"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/metrics"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/tracing"
)

// App is a built fhirgate server.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	lookup   func(string) (string, bool)
	registry *search.Registry
	store    *sqlstore.Store
	// backend holds the FHIR resources: the store, or an upstream FHIR server (proxy mode).
	backend backend.Backend
	// tenants are the further FHIR bases at /t/{name}/fhir.
	tenants  []*tenant
	auth     *authserver.Server
	audit    *audit.Trail
	verifier *authn.Verifier
	engine   *policy.Engine
	gw       *gateway.Gateway
	fhir     *fhirapi.API
	metrics  *metrics.Metrics
	shared   *sharedState
	public   *http.Server
	admin    *http.Server
	version  string
	// consents serves patients' Consents to the policy (cached; dropped on Consent writes).
	consents *consentStore
	// demo holds the demo users and clients printed at start (nil without --demo).
	demo *demoAccounts
	// stop ends the background work (key rotation, cleanup).
	stop context.CancelFunc
	// shutdownTracing flushes and stops the trace exporter.
	shutdownTracing func(context.Context) error
	wg              sync.WaitGroup
}

// Options are the collaborators New does not build from the config.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Lookup reads environment variables (secrets named by the config); os.LookupEnv when nil.
	Lookup func(string) (string, bool)
}

// New builds every component from a validated configuration and opens the store. With
// cfg.Demo, the demo users and clients are added to the configured ones.
func New(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Lookup == nil {
		opts.Lookup = os.LookupEnv
	}
	a := &App{cfg: cfg, log: opts.Logger, version: opts.Version, lookup: opts.Lookup}
	reg, err := search.DefaultRegistry()
	if err != nil {
		return nil, err
	}
	a.registry = reg
	a.store, err = OpenStore(ctx, &cfg, reg, a.log)
	if err != nil {
		return nil, err
	}
	if err := a.build(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// build wires the components in dependency order: keys and the authorization server, token
// verification and the policy, the FHIR API, the gateway around every route group.
func (a *App) build(ctx context.Context) error {
	if a.cfg.Demo {
		a.demo = newDemoAccounts(a.cfg)
	}
	a.metrics = metrics.New()
	fhirBackend, err := a.fhirBackend()
	if err != nil {
		return err
	}
	a.backend = fhirBackend
	shutdownTracing, err := tracing.Setup(ctx, a.cfg.Gateway.Tracing)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	a.shutdownTracing = shutdownTracing
	kms, err := authserver.OpenKeys(ctx, a.store, a.cfg.Auth, a.cfg.DataDir, a.lookup, nil, a.log)
	if err != nil {
		return fmt.Errorf("signing keys: %w", err)
	}
	if err := a.openAudit(ctx, kms); err != nil {
		return err
	}
	if err := a.openShared(ctx); err != nil {
		return err
	}
	initialAccessToken := ""
	if v := a.cfg.Auth.Registration.InitialAccessTokenEnv; v != "" {
		initialAccessToken, _ = a.lookup(v)
	}
	a.consents = newConsentStore(a.backend, a.registry, a.cfg.Policy.Consent.CacheTTL)
	a.consents.share(a.sharedConsents(), consentScope(""))
	a.auth, err = authserver.New(ctx, a.withShared(authserver.Config{
		Security: securityConfig(a.cfg.Policy), Consents: a.consents.recorder(a.cfg.Policy.Consent),
		Issuer: a.cfg.Issuer(), FHIRBase: a.cfg.FHIRBase(), Store: a.store, Keys: kms,
		Patients: patientLister{a.backend, a.registry}, Auth: a.cfg.Auth,
		InitialAccessToken: initialAccessToken, Logger: a.log, Audit: a.audit, TokenIssued: a.metrics.TokenIssued,
		MutualTLS: a.cfg.Gateway.TLS.Enabled() && a.cfg.Gateway.TLS.ClientAuth != "" && a.cfg.Gateway.TLS.ClientAuth != "none",
	}))
	if err != nil {
		return err
	}
	clients, users := a.cfg.Clients, a.cfg.Users
	if a.demo != nil {
		clients = append(clients, a.demo.clients...)
		users = append(users, a.demo.users...)
	}
	if err := a.auth.LoadConfig(ctx, clients, users); err != nil {
		return err
	}
	bgCtx, stop := context.WithCancel(context.Background())
	a.stop = stop
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.auth.Run(bgCtx, time.Minute)
	}()
	a.runShared(bgCtx)

	// The key source is this deployment's store: an unknown kid (a key another instance just
	// rotated in) is looked up again after a second, not the 30 s kept for remote JWKS.
	a.verifier, err = authn.NewVerifier(authn.Config{Issuer: a.cfg.Issuer(), Audience: a.cfg.FHIRBase(), Keys: kms, Revoker: a.revoker(), KeyMinRefresh: time.Second})
	if err != nil {
		return err
	}
	matcher, err := search.NewMatcher(a.registry)
	if err != nil {
		return err
	}
	membership, err := compartment.NewMembership(a.registry, nil)
	if err != nil {
		return err
	}
	a.engine, err = a.policyEngine(matcher, membership)
	if err != nil {
		return err
	}
	validator, err := validate.New()
	if err != nil {
		return err
	}
	// Compile every type's schema in the background so no first write pays for it.
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := validator.CompileAll(); err != nil {
			a.log.Error("compiling the resource schemas failed; each type compiles at its first write", "error", err)
		}
	}()
	pageKey, err := a.pageKey()
	if err != nil {
		return err
	}
	security, err := json.Marshal(a.auth.CapabilitySecurity())
	if err != nil {
		return err
	}
	limits := a.cfg.Gateway.FHIRLimits
	a.fhir, err = fhirapi.New(fhirapi.Options{
		Backend:       timedBackend{a.consents.watch(a.backend), a.metrics},
		Registry:      a.registry,
		Validator:     validator,
		Authenticator: a.fhirAuthenticator(),
		Policy:        a.engine,
		Observe:       a.observeDecision,
		Audit:         a.audit,
		AuditLog:      a.store,
		AuditorRole:   a.cfg.Audit.AuditorRole,
		Bundles: &bundle.Processor{
			Backend: a.consents.watch(a.backend), Validator: validator, BaseURL: a.cfg.FHIRBase(),
			Parse:      bundle.SearchParser(a.registry, a.cfg.FHIRBase(), a.cfg.FHIR.MaxCount),
			MaxEntries: limits.MaxBundleEntries, Log: a.log,
		},
		BaseURL:      a.cfg.FHIRBase(),
		DefaultCount: a.cfg.FHIR.DefaultCount,
		MaxCount:     a.cfg.FHIR.MaxCount,
		PageKey:      pageKey,
		MaxBodyBytes: a.cfg.Gateway.BodyLimit(config.GroupFHIR),
		Limits: fhirapi.Limits{
			MaxSearchParams: limits.MaxSearchParams, MaxIncludes: limits.MaxIncludes, QueryTimeout: limits.QueryTimeout,
		},
		Security: security,
		Software: "fhirgate",
		Version:  a.version,
		Logger:   a.log,
	})
	if err != nil {
		return err
	}
	if err := a.buildTenants(ctx, tenantDeps{validator: validator, bundleVal: validator, matcher: matcher, membership: membership, pageKey: pageKey}); err != nil {
		return err
	}
	a.gw, err = gateway.New(a.cfg.Gateway, gateway.Deps{
		Logger: a.log, Identify: identify, AllowedOrigin: allowedOrigins(clients), LookupEnv: a.lookup,
		OnReject: a.metrics.RateLimitRejected, RedisHook: a.metrics.RedisHook(),
	})
	if err != nil {
		return err
	}
	a.public = &http.Server{Handler: a.publicRoutes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	a.gw.ConfigureServer(a.public)
	if a.cfg.AdminAddr != "" {
		handler, err := a.adminRoutes()
		if err != nil {
			return err
		}
		a.admin = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		a.gw.ConfigureServer(a.admin)
	}
	return nil
}

// policyEngine builds the enforced rule set and, in audit-only mode, the shadow one.
func (a *App) policyEngine(matcher policy.Matcher, membership policy.Membership) (*policy.Engine, error) {
	careTeams := careTeamSource{b: a.backend, reg: a.registry}
	ua, err := policy.NewUserAccess(a.cfg.Policy.UserAccess, careTeams)
	if err != nil {
		return nil, err
	}
	cfg := policy.Config{
		Registry: a.registry, Matcher: matcher, Membership: membership, BaseURL: a.cfg.FHIRBase(),
		UserAccess: ua, MaxUserPatients: a.cfg.Policy.MaxUserPatients, DenyAsForbidden: !a.cfg.Policy.HideExistence,
	}
	// A plain upstream (security off) serves its data whole to the proxy in front of it, which
	// enforces labels and Consents itself.
	if !a.cfg.Unsecured() {
		cfg.Labels = labelPolicy(a.cfg.Policy)
		if a.cfg.Policy.Consent.Enforce {
			cfg.Consents = a.consents
		}
	}
	if a.cfg.Policy.ShadowEnabled() {
		sua, err := policy.NewUserAccess(a.cfg.Policy.Shadow.UserAccess, careTeams)
		if err != nil {
			return nil, err
		}
		cfg.Shadow = &policy.Config{UserAccess: sua, MaxUserPatients: a.cfg.Policy.Shadow.MaxUserPatients, DenyAsForbidden: !a.cfg.Policy.Shadow.HideExistence}
	}
	return policy.New(cfg)
}

// openAudit opens the tamper-evident trail on the store; checkpoints are signed with the current
// access-token key, whose public half is in the JWKS.
func (a *App) openAudit(ctx context.Context, kms *keys.Manager) error {
	ao, err := audit.FromConfig(a.cfg.Audit, a.lookup)
	if err != nil {
		return err
	}
	ao.Store = a.store
	ao.Logger = a.log
	ao.Source = audit.Source{Observer: a.cfg.Issuer()}
	ao.Signer = audit.NewJOSESigner(func() (audit.SigningKey, error) {
		k, err := kms.Current(keys.PurposeAccess)
		if err != nil {
			return audit.SigningKey{}, err
		}
		return audit.SigningKey{KID: k.KID, Key: k.Signer}, nil
	})
	a.audit, err = audit.Open(ctx, ao)
	return err
}

// publicRoutes mounts every route group behind the gateway chain of its group.
func (a *App) publicRoutes() http.Handler {
	authMux := http.NewServeMux()
	a.auth.Register(authMux)
	wrap := func(group string, h http.Handler) http.Handler {
		return tracing.Middleware(group, a.metrics.Instrument(group, a.gw.Wrap(group, h)))
	}
	mux := http.NewServeMux()
	fhirH := wrap(config.GroupFHIR, a.fhir)
	mux.Handle("/fhir", fhirH)
	mux.Handle("/fhir/", fhirH)
	discovery := wrap(config.GroupDiscovery, a.fhirOrAuth(authMux))
	mux.Handle("/fhir/metadata", discovery)
	mux.Handle("/fhir/.well-known/", discovery)
	mux.Handle("/.well-known/", discovery)
	mux.Handle("/auth/jwks", discovery)
	oauthH := wrap(config.GroupOAuth, authMux)
	for _, p := range []string{authserver.PathToken, authserver.PathIntrospect, authserver.PathRevoke, authserver.PathRegister, authserver.PathUserinfo} {
		mux.Handle(p, oauthH)
	}
	// Everything else of the authorization server is pages: authorize, login, consent,
	// picker, logout, the EHR launcher.
	loginH := wrap(config.GroupLogin, authMux)
	mux.Handle("/auth/", loginH)
	mux.Handle(authserver.PathEHR, loginH)
	mux.Handle(authserver.PathEHR+"/", loginH)
	a.mountTenants(mux, wrap)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("GET /{$}", a.home)
	a.mountDemoApp(mux, wrap)
	return mux
}

// fhirOrAuth sends /fhir/metadata to the FHIR API and the discovery documents to the
// authorization server.
func (a *App) fhirOrAuth(authMux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/metadata" {
			a.fhir.ServeHTTP(w, r)
			return
		}
		authMux.ServeHTTP(w, r)
	})
}

func (a *App) adminRoutes() (http.Handler, error) {
	token, _ := a.lookup(a.cfg.AdminTokenEnv)
	mux := http.NewServeMux()
	if token == "" {
		a.log.Warn("the admin API is disabled: its token variable is empty", "variable", a.cfg.AdminTokenEnv)
	} else {
		api, err := adminapi.New(adminapi.Config{Token: token, Server: a.auth, Logger: a.log})
		if err != nil {
			return nil, fmt.Errorf("admin API (%s): %w", a.cfg.AdminTokenEnv, err)
		}
		api.Register(mux)
		mux.Handle("POST "+explain.Path, explain.New(explain.Config{
			Verifier: a.verifier, Policy: a.engine, Registry: a.registry, BaseURL: a.cfg.FHIRBase(), AdminToken: token,
		}))
	}
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	return tracing.Middleware(config.GroupAdmin, a.gw.Wrap(config.GroupAdmin, mux)), nil
}

// observeDecision is told of every FHIR access decision: it is counted by reason, and denials
// are logged at debug level (the audit trail records every decision of a request).
func (a *App) observeDecision(r *http.Request, in policy.Input, d policy.Decision) {
	reason := ""
	if len(d.Reasons) > 0 {
		reason = string(d.Reasons[0])
	}
	a.metrics.Decision(string(in.Interaction), d.Allow, reason)
	if !d.Allow {
		a.log.DebugContext(r.Context(), "access denied", "interaction", in.Interaction, "type", in.Type, "id", in.ID, "reasons", d.Reasons, "rule", d.Rule)
	}
	if s := d.Shadow; s != nil && s.Allow != d.Allow {
		a.log.InfoContext(r.Context(), "shadow policy disagrees", "interaction", in.Interaction, "type", in.Type, "id", in.ID,
			"enforced", d.Allow, "shadow", s.Allow, "shadow_reasons", s.Reasons, "shadow_rule", s.Rule)
	}
}

// pageKey reads the paging-link key from the configured variable (hex, at least 32 bytes), or
// makes a random one.
func (a *App) pageKey() ([]byte, error) {
	raw, ok := a.lookup(a.cfg.FHIR.PageTokenKeyEnv)
	if !ok || raw == "" {
		return nil, nil
	}
	key, err := hex.DecodeString(raw)
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s must be at least 32 bytes in hex", a.cfg.FHIR.PageTokenKeyEnv)
	}
	return key, nil
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// readyz reports the database and the gateway's shared state (Redis); 503 when either fails.
func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	status, body := http.StatusOK, "database: ok\n"
	if err := a.store.Ping(ctx); err != nil {
		a.log.Warn("not ready: database", "error", err)
		status, body = http.StatusServiceUnavailable, "database: unavailable\n"
	}
	if err := a.gw.ReadyCheck(ctx); err != nil {
		// The cause (Redis address, engine settings) is logged, not served: /readyz is public.
		a.log.Warn("not ready: gateway", "error", err)
		status, body = http.StatusServiceUnavailable, body+"rate limits: unavailable\n"
	} else {
		body += "rate limits: ok (" + a.gw.Engine() + ")\n"
	}
	body += a.sharedReady(ctx)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// home points a person who opens the base URL to what is there.
func (a *App) home(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "fhirgate %s\n\nFHIR base:        %s\nSMART discovery:  %s/.well-known/smart-configuration\nOIDC discovery:   %s/.well-known/openid-configuration\nEHR launcher:     %s/ehr\n",
		a.version, a.cfg.FHIRBase(), a.cfg.FHIRBase(), a.cfg.Issuer(), a.cfg.Issuer())
	if a.demo != nil {
		fmt.Fprintf(w, "Demo SMART app:   %s\n", a.demoAppURL())
	}
}

// Handler is the public HTTP handler (tests serve it with httptest).
func (a *App) Handler() http.Handler { return a.public.Handler }

// AdminHandler is the admin listener's handler (admin API, metrics, health), nil without one.
func (a *App) AdminHandler() http.Handler {
	if a.admin == nil {
		return nil
	}
	return a.admin.Handler
}

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
	go func() { errc <- serveOn(a.public, ln) }()
	if a.admin != nil {
		aln, err := net.Listen("tcp", a.cfg.AdminAddr)
		if err != nil {
			_ = a.public.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
		go func() { errc <- serveOn(a.admin, aln) }()
		a.log.Info("admin API listening", "addr", aln.Addr().String())
	}
	a.log.Info("fhirgate listening", "addr", ln.Addr().String(), "fhir_base", a.cfg.FHIRBase())
	if ready != nil {
		ready(ln.Addr().String())
	}
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

func serveOn(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// Close stops background work, commits the audit trail and releases the gateway and the store.
func (a *App) Close() error {
	if a.stop != nil {
		a.stop()
		a.wg.Wait()
	}
	var errs []error
	if a.audit != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, a.audit.Close(ctx))
		cancel()
	}
	if a.gw != nil {
		errs = append(errs, a.gw.Close())
	}
	errs = append(errs, a.closeShared())
	if a.shutdownTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, a.shutdownTracing(ctx))
		cancel()
	}
	errs = append(errs, a.store.Close())
	return errors.Join(errs...)
}
