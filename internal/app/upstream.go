package app

import (
	"context"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/upstream"
)

// fhirBackend is where the FHIR API's resources live: the embedded store, or the upstream FHIR
// server of proxy mode (docs/proxy.md).
func (a *App) fhirBackend() (backend.Backend, error) {
	if a.cfg.Upstream.URL == "" {
		return a.store, nil
	}
	b, err := a.upstreamBackend("upstream", a.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	a.log.Info("proxy mode: FHIR resources are served from the upstream FHIR server", "upstream", b.BaseURL(), "auth", a.cfg.Upstream.Auth.Mode)
	return b, nil
}

// upstreamBackend builds the backend of one upstream; key names its config in errors.
func (a *App) upstreamBackend(key string, u config.Upstream) (*upstream.Backend, error) {
	auth := upstream.Auth{Mode: u.Auth.Mode}
	switch u.Auth.Mode {
	case upstream.AuthHeader:
		auth.HeaderName = u.Auth.Header
		auth.HeaderValue, _ = a.lookup(u.Auth.ValueEnv)
		if auth.HeaderValue == "" {
			return nil, fmt.Errorf("%s.auth.value_env: the variable %s is empty", key, u.Auth.ValueEnv)
		}
	case upstream.AuthClientCredentials:
		auth.TokenURL, auth.ClientID, auth.Scopes = u.Auth.TokenURL, u.Auth.ClientID, u.Auth.Scopes
		auth.ClientSecret, _ = a.lookup(u.Auth.ClientSecretEnv)
		if auth.ClientSecret == "" {
			return nil, fmt.Errorf("%s.auth.client_secret_env: the variable %s is empty", key, u.Auth.ClientSecretEnv)
		}
	}
	client, err := upstream.NewClient(auth, nil)
	if err != nil {
		return nil, fmt.Errorf("%s.auth: %w", key, err)
	}
	b, err := upstream.New(upstream.Options{
		BaseURL: u.URL, Client: client, Timeout: u.Timeout, TrustTotals: u.TrustTotals,
		MaxResponseBytes: u.MaxResponseBytes, Logger: a.log,
		Registry: a.registry,
	})
	if err != nil {
		return nil, fmt.Errorf("%s.url: %w", key, err)
	}
	return b, nil
}

// fhirAuthenticator verifies the FHIR API's bearer tokens, or in fhir.security.mode off lets
// every request in as an unsecured system client.
func (a *App) fhirAuthenticator() fhirapi.Authenticator {
	if !a.cfg.Unsecured() {
		return a.verifier
	}
	a.log.Warn("FHIR SECURITY IS OFF: every FHIR interaction is served to anyone without a token (fhir.security.mode off); run this only as a private upstream",
		"addr", a.cfg.Addr)
	scopes, _ := smart.ParseScopes("system/*.cruds")
	return unsecured{scopes: scopes}
}

// UnsecuredClient is the client id the audit trail records for requests of mode off.
const UnsecuredClient = "fhirgate-unsecured"

// unsecured is the Authenticator of fhir.security.mode off.
type unsecured struct{ scopes smart.Scopes }

// Authenticate implements fhirapi.Authenticator: the header is ignored.
func (u unsecured) Authenticate(context.Context, string) (*authn.Principal, error) {
	now := time.Now()
	return &authn.Principal{
		Issuer: "fhirgate:unsecured", Subject: UnsecuredClient, ClientID: UnsecuredClient,
		Scopes: u.scopes, IssuedAt: now, Expiry: now.Add(time.Minute),
		Clearance: &authn.Clearance{Confidentiality: "V", Sensitivity: []string{"*"}},
	}, nil
}
