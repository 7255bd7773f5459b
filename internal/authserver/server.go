package authserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	fositehmac "github.com/ory/fosite/token/hmac"
	fositejwt "github.com/ory/fosite/token/jwt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authserver/password"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/tokens"
	"github.com/fhirgate/fhirgate/internal/web"
)

// PatientSummary is one row of the patient picker.
type PatientSummary struct {
	ID        string
	Name      string
	BirthDate string
	Gender    string
}

// PatientLister finds patients for the patient picker and the EHR launcher. The app implements it
// over the FHIR backend; query is free text (name), empty for "any".
type PatientLister interface {
	ListPatients(ctx context.Context, query string, limit int) ([]PatientSummary, error)
}

// Config is what New needs.
type Config struct {
	// Issuer is the OAuth issuer, the base URL without trailing slash.
	Issuer string
	// FHIRBase is the FHIR base URL, the aud of every access token.
	FHIRBase string
	Store    *sqlstore.Store
	Keys     *keys.Manager
	// Patients serves the patient picker; without it clinicians cannot pick a patient and
	// patient-context scopes are withheld from them.
	Patients PatientLister
	Auth     config.Auth
	// InitialAccessToken, when not empty, must be presented as a Bearer token to dynamic
	// registration (the app reads it from the variable named by auth.registration).
	InitialAccessToken string
	// HTTPClient fetches client JWKS URLs; a client with a 10 s timeout when nil.
	HTTPClient *http.Client
	// TokenIssued, when set, is told of every token response by grant type (metrics).
	TokenIssued func(grant string)
	// MutualTLS says the public listener asks for TLS client certificates, so tls_client_auth
	// and certificate-bound access tokens (RFC 8705) are advertised in discovery.
	MutualTLS bool
	// PasswordParams are the argon2id costs; password.Default when zero.
	PasswordParams password.Params
	// SharedThrottle, when set, counts failed logins across instances (Redis); nil keeps the
	// per-instance counters, which are also the fallback while it cannot answer.
	SharedThrottle SharedThrottle
	// AssertionJTIs records client-assertion jtis; the store when nil.
	AssertionJTIs AssertionJTIs
	// Audit receives the security events (login, logout, consent, token issue, refresh,
	// revocation and introspection, client registration, key rotation); nil records none. Token
	// issuance fails closed when recording fails.
	Audit audit.Recorder
	// Security derives the clearance, purpose-of-use and break-glass claims from roles; nil
	// issues none and keeps the built-in scope ceilings.
	Security *Security
	// Consents records a Consent when a patient authorises an app; nil records none.
	Consents ConsentRecorder
	Now      func() time.Time
	Logger   *slog.Logger
}

// Server is the authorization server.
type Server struct {
	cfg      Config
	auth     config.Auth
	issuer   string
	fhirBase string
	tokenURL string
	authzURL string
	db       *sqlstore.Store
	keys     *keys.Manager
	minter   *tokens.Minter
	clients  *Clients
	users    *Users
	patients PatientLister
	provider fosite.OAuth2Provider
	fcfg     *fosite.Config
	hmacs    *hmacStrategy
	jwks     *jwksFetcher
	throttle *throttle
	pages    *web.Pages
	log      *slog.Logger
	now      func() time.Time
}

// Paths of the endpoints. Only the two discovery documents are fixed by contract; clients find
// every other endpoint through them.
const (
	PathOpenIDConfig = "/.well-known/openid-configuration"
	PathSMARTConfig  = "/fhir/.well-known/smart-configuration"
	PathAuthorize    = "/auth/authorize"
	PathInteraction  = "/auth/interaction/"
	PathToken        = "/auth/token"
	PathIntrospect   = "/auth/introspect"
	PathRevoke       = "/auth/revoke"
	PathRegister     = "/auth/register"
	PathUserinfo     = "/auth/userinfo"
	PathJWKS         = "/auth/jwks"
	PathLogout       = "/auth/logout"
	PathStyle        = "/auth/smart-style.json"
	PathEHR          = "/ehr"
	PathGrants       = "/auth/grants"
)

// New builds the server and loads the clients and users of the configuration into the store
// (replacing earlier config-sourced entries of the same id).
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Keys == nil {
		return nil, errors.New("authserver: Store and Keys are required")
	}
	if cfg.Issuer == "" || cfg.FHIRBase == "" {
		return nil, errors.New("authserver: Issuer and FHIRBase are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.PasswordParams == (password.Params{}) {
		cfg.PasswordParams = password.Default
	}
	a := cfg.Auth.WithDefaults()
	if a.Registration.Enabled && a.Registration.InitialAccessTokenEnv != "" && len(cfg.InitialAccessToken) < 16 {
		// Fail closed: a configured but empty (or trivial) token must not mean open registration.
		return nil, fmt.Errorf("authserver: dynamic registration requires an initial access token of at least 16 characters in %s", a.Registration.InitialAccessTokenEnv)
	}
	s := &Server{
		cfg: cfg, auth: a,
		issuer:   strings.TrimRight(cfg.Issuer, "/"),
		fhirBase: strings.TrimRight(cfg.FHIRBase, "/"),
		db:       cfg.Store, keys: cfg.Keys, patients: cfg.Patients,
		log: cfg.Logger.With("component", "authserver"), now: cfg.Now,
	}
	s.tokenURL = s.issuer + PathToken
	s.authzURL = s.issuer + PathAuthorize
	s.minter = &tokens.Minter{Keys: cfg.Keys, Issuer: s.issuer, Audience: s.fhirBase, Now: cfg.Now}
	s.clients = NewClients(cfg.Store, s.fhirBase, cfg.Now)
	users, err := NewUsers(cfg.Store, cfg.PasswordParams, cfg.Now)
	if err != nil {
		return nil, err
	}
	s.users = users
	s.jwks = &jwksFetcher{client: cfg.HTTPClient, log: s.log, now: cfg.Now}
	s.throttle = newThrottle(a.Login, cfg.Now)
	if s.pages, err = web.Load(); err != nil {
		return nil, err
	}
	s.buildProvider()
	if cfg.Audit != nil {
		cfg.Keys.SetRotationHook(s.onKeyRotated)
	}
	return s, nil
}

// fositeConfig adapts fosite's configuration getters that must read live state (the HMAC secret
// rotates with the keys manager).
type fositeConfig struct {
	*fosite.Config
	keys *keys.Manager
}

func (c *fositeConfig) GetGlobalSecret(ctx context.Context) ([]byte, error) {
	cur, _, err := c.keys.HMACSecrets()
	return cur, err
}

func (c *fositeConfig) GetRotatedGlobalSecrets(ctx context.Context) ([][]byte, error) {
	_, rot, err := c.keys.HMACSecrets()
	return rot, err
}

func (s *Server) buildProvider() {
	// fosite's HTTP client (used only for request_uri and its own JWKS fetcher, both unused by
	// fhirgate's flows) logs through slog instead of printing [DEBUG] lines to stderr.
	rc := retryablehttp.NewClient()
	rc.Logger = s.log.With("component", "fosite-http")
	rc.HTTPClient = s.cfg.HTTPClient
	rc.RetryMax = 1
	fc := &fosite.Config{
		AccessTokenLifespan:   s.auth.AccessTokenTTL,
		RefreshTokenLifespan:  s.auth.RefreshTokenTTL,
		AuthorizeCodeLifespan: s.auth.CodeTTL,
		IDTokenLifespan:       s.auth.IDTokenTTL,
		IDTokenIssuer:         s.issuer,
		AccessTokenIssuer:     s.issuer,
		TokenURL:              s.tokenURL,
		ScopeStrategy:         smart.Strategy,
		AudienceMatchingStrategy: func(haystack []string, needle []string) error {
			for _, n := range needle {
				if n != s.fhirBase {
					return fosite.ErrInvalidRequest.WithHint("Requested audience is not this server's FHIR base URL.")
				}
			}
			return nil
		},
		// PKCE for every client, S256 only (SMART App Launch 2.x; RFC 7636).
		EnforcePKCE:                    true,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		// The stored code keeps redirect_uri so the token request must repeat it identically.
		SanitationWhiteList:          []string{"redirect_uri", "nonce"},
		RefreshTokenScopes:           []string{"offline_access", "online_access"},
		MinParameterEntropy:          8,
		TokenEntropy:                 32,
		ClientAuthenticationStrategy: s.authenticateClient,
		HTTPClient:                   rc,
		JWKSFetcherStrategy:          fosite.NewDefaultJWKSFetcherStrategy(fosite.JWKSFetcherWithHTTPClient(rc)),
		HMACHasher:                   func() hash.Hash { return sha256.New() },
		SendDebugMessagesToClients:   false,
	}
	s.fcfg = fc
	conf := &fositeConfig{Config: fc, keys: s.keys}
	store := &fositeStore{db: s.db, clients: s.clients, now: s.now}
	enigma := &fositehmac.HMACStrategy{Config: conf}
	s.hmacs = &hmacStrategy{HMACSHAStrategyUnPrefixed: oauth2.NewHMACSHAStrategyUnPrefixed(enigma, conf), now: s.now,
		reload: func(ctx context.Context) { s.keys.ReloadIfOlder(ctx, time.Second) }}
	access := &accessStrategy{minter: s.minter, now: s.now, defaultTTL: s.auth.AccessTokenTTL, sec: s.cfg.Security}
	ids := &idStrategy{minter: s.minter, fhirBase: s.fhirBase, now: s.now, sec: s.cfg.Security}
	// id_token_hint validation needs a fosite JWT signer; it gets the current ID-token key.
	idSigner := &fositejwt.DefaultSigner{GetPrivateKey: func(context.Context) (interface{}, error) {
		k, err := s.keys.Current(keys.PurposeID)
		if err != nil {
			return nil, err
		}
		return k.Signer, nil
	}}

	explicit := &oauth2.AuthorizeExplicitGrantHandler{
		AccessTokenStrategy: access, RefreshTokenStrategy: s.hmacs, AuthorizeCodeStrategy: s.hmacs,
		CoreStorage: store, TokenRevocationStorage: store, Config: conf,
	}
	clientCreds := &oauth2.ClientCredentialsGrantHandler{
		HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: access, AccessTokenStorage: store, Config: conf},
		Config:       conf,
	}
	refresh := &oauth2.RefreshTokenGrantHandler{
		AccessTokenStrategy: access, RefreshTokenStrategy: s.hmacs, TokenRevocationStorage: store, Config: conf,
	}
	revocation := &oauth2.TokenRevocationHandler{TokenRevocationStorage: store, AccessTokenStrategy: access, RefreshTokenStrategy: s.hmacs}
	pkceH := &pkce.Handler{AuthorizeCodeStrategy: s.hmacs, Storage: store, Config: conf}
	oidcExplicit := &openid.OpenIDConnectExplicitHandler{
		OpenIDConnectRequestStorage:   store,
		IDTokenHandleHelper:           &openid.IDTokenHandleHelper{IDTokenStrategy: ids},
		OpenIDConnectRequestValidator: openid.NewOpenIDConnectRequestValidator(idSigner, conf),
		Config:                        conf,
	}
	oidcRefresh := &openid.OpenIDConnectRefreshHandler{IDTokenHandleHelper: &openid.IDTokenHandleHelper{IDTokenStrategy: ids}, Config: conf}
	exchange := &breakGlassExchange{HandleHelper: &oauth2.HandleHelper{AccessTokenStrategy: access, AccessTokenStorage: store, Config: conf}, s: s}

	fc.AuthorizeEndpointHandlers = fosite.AuthorizeEndpointHandlers{explicit, pkceH, oidcExplicit}
	fc.TokenEndpointHandlers = fosite.TokenEndpointHandlers{explicit, refresh, clientCreds, pkceH, oidcExplicit, oidcRefresh, exchange}
	fc.RevocationHandlers = fosite.RevocationHandlers{revocation}
	s.provider = fosite.NewOAuth2Provider(store, conf)
}

// Clients returns the client registry (the admin API and CLI use it).
func (s *Server) Clients() *Clients { return s.clients }

// Users returns the user registry.
func (s *Server) Users() *Users { return s.users }

// Revoked reports whether an access token jti was revoked; internal/authn calls it per request.
func (s *Server) Revoked(ctx context.Context, jti string) (bool, error) {
	return s.db.Revoked(ctx, jti)
}

// LoadConfig makes the store's config-sourced clients and users equal to those of the
// configuration: it puts every configured one (source "config") and removes, with everything
// issued to them, config-sourced entries no longer configured. Entries made through the admin
// API, the CLI or dynamic registration are left alone unless the configuration names them.
func (s *Server) LoadConfig(ctx context.Context, clients []config.Client, users []config.User) error {
	wantC := map[string]bool{}
	for _, c := range clients {
		wantC[c.ClientID] = true
	}
	wantU := map[string]bool{}
	for _, u := range users {
		wantU[u.Username] = true
	}
	stored, err := s.db.ListOAuthClients(ctx)
	if err != nil {
		return err
	}
	for _, c := range stored {
		if c.Source == "config" && !wantC[c.ClientID] {
			if err := s.clients.Delete(ctx, c.ClientID); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			s.log.Info("removed client no longer in the configuration", "client_id", c.ClientID)
		}
	}
	storedU, err := s.db.ListOAuthUsers(ctx)
	if err != nil {
		return err
	}
	for _, u := range storedU {
		if u.Source == "config" && !wantU[u.Username] {
			if err := s.users.Delete(ctx, u.Username); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			s.log.Info("removed user no longer in the configuration", "username", u.Username)
		}
	}
	for _, c := range clients {
		m, secret, err := MetadataFromConfig(c)
		if err != nil {
			return err
		}
		if err := s.clients.Put(ctx, m, secret, "config"); err != nil {
			return fmt.Errorf("authserver: config client %q: %w", c.ClientID, err)
		}
	}
	for _, u := range users {
		spec := UserSpec{Username: u.Username, Password: u.Password.Value(), PasswordHash: u.PasswordHash, FHIRUser: u.FHIRUser, Roles: u.Roles}
		if err := s.users.Put(ctx, spec, "config"); err != nil {
			return fmt.Errorf("authserver: config user %q: %w", u.Username, err)
		}
	}
	return nil
}

// Maintain runs the periodic work: key reload and rotation, and deletion of expired rows. The
// app calls it from a ticker; the token endpoint also calls the cheap key part.
func (s *Server) Maintain(ctx context.Context) error {
	if err := s.keys.Maintain(ctx); err != nil {
		return err
	}
	n, err := s.db.CleanupOAuth(ctx, s.now(), 24*time.Hour)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Debug("removed expired authorization rows", "rows", n)
	}
	return nil
}

// Register mounts every endpoint on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathOpenIDConfig, s.openIDConfiguration)
	mux.HandleFunc("GET "+PathSMARTConfig, s.smartConfiguration)
	mux.HandleFunc("OPTIONS "+PathSMARTConfig, s.preflight)
	mux.HandleFunc("OPTIONS "+PathOpenIDConfig, s.preflight)
	mux.HandleFunc("GET "+PathJWKS, s.jwksHandler)
	mux.HandleFunc("OPTIONS "+PathJWKS, s.preflight)
	mux.HandleFunc("GET "+PathStyle, s.style)
	mux.HandleFunc("GET "+PathAuthorize, s.authorize)
	mux.HandleFunc("POST "+PathAuthorize, s.authorize)
	mux.HandleFunc("GET "+PathInteraction+"{id}", s.interactionPage)
	mux.HandleFunc("POST "+PathInteraction+"{id}/{step}", s.interactionSubmit)
	mux.HandleFunc(PathToken, s.token)
	mux.HandleFunc(PathIntrospect, s.introspect)
	mux.HandleFunc(PathRevoke, s.revoke)
	mux.HandleFunc(PathUserinfo, s.userinfo)
	mux.HandleFunc(PathRegister, s.register)
	mux.HandleFunc("POST "+PathLogout, s.logout)
	mux.HandleFunc("GET "+PathEHR, s.ehrPage)
	mux.HandleFunc("POST "+PathEHR+"/login", s.ehrLogin)
	mux.HandleFunc("POST "+PathEHR+"/launch", s.ehrLaunch)
	mux.HandleFunc("GET "+PathGrants, s.grantsPage)
	mux.HandleFunc("POST "+PathGrants+"/login", s.grantsLogin)
	mux.HandleFunc("POST "+PathGrants+"/revoke", s.grantsRevoke)
}

// mac is an HMAC-SHA256 under the current HMAC secret, hex encoded; used for CSRF tokens.
func (s *Server) mac(parts ...string) string {
	cur, _, err := s.keys.HMACSecrets()
	if err != nil {
		return ""
	}
	m := hmac.New(sha256.New, cur)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// sha256Hex is the stored form of cookie values and launch ids.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Keys returns the signing-key manager.
func (s *Server) Keys() *keys.Manager { return s.keys }

// OpenKeys loads the key-encryption key (from the environment variable auth.key_encryption_key_env
// names, else {dataDir}/keys.kek) and opens the signing keys on store, creating them on first use.
// It is what serve and the CLI both call.
func OpenKeys(ctx context.Context, store *sqlstore.Store, auth config.Auth, dataDir string, lookupEnv func(string) (string, bool), now func() time.Time, log *slog.Logger) (*keys.Manager, error) {
	a := auth.WithDefaults()
	envKEK := ""
	if lookupEnv != nil {
		envKEK, _ = lookupEnv(a.KeyEncryptionKeyEnv)
	}
	kek, source, err := keys.LoadKEK(envKEK, dataDir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	if source != "env" {
		log.Warn("signing keys are encrypted with a key file next to the data; set the key-encryption key variable in production",
			"file", source, "variable", a.KeyEncryptionKeyEnv)
	}
	return keys.Open(ctx, keys.Options{Store: store, KEK: kek, Now: now, Logger: log, RotateEvery: a.KeyRotation, Overlap: a.KeyOverlap})
}

// Run calls Maintain every interval until ctx ends; the app starts it in a goroutine.
func (s *Server) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Maintain(ctx); err != nil {
				s.log.ErrorContext(ctx, "authorization server maintenance failed", "error", err)
			}
		}
	}
}
