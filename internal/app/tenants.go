package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authn/external"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// tenant is one more FHIR base, {base_url}/t/{name}/fhir (docs/multi-tenancy.md).
type tenant struct {
	name, base string
	api        *fhirapi.API
	// smartConfig is the tenant's .well-known/smart-configuration: its external issuer's
	// endpoints and the tenant's capabilities.
	smartConfig []byte
}

// tenantDeps are the shared components every tenant's FHIR API is built with.
type tenantDeps struct {
	validator  fhirapi.Validator
	bundleVal  bundle.Validator
	matcher    policy.Matcher
	membership policy.Membership
	pageKey    []byte
}

// buildTenants builds each configured tenant: its upstream backend, its external issuer's
// verifier (discovery fetched now, so a tenant whose issuer is unreachable fails the start),
// its policy and its FHIR API.
func (a *App) buildTenants(ctx context.Context, deps tenantDeps) error {
	for i, tc := range a.cfg.Tenants {
		key := fmt.Sprintf("tenants[%d]", i)
		t, err := a.buildTenant(ctx, key, tc, deps)
		if err != nil {
			return err
		}
		a.tenants = append(a.tenants, t)
		a.log.Info("tenant served", "tenant", tc.Name, "fhir_base", t.base, "issuer", tc.Authorization.Issuer, "upstream", tc.Upstream.URL)
	}
	return nil
}

func (a *App) buildTenant(ctx context.Context, key string, tc config.Tenant, deps tenantDeps) (*tenant, error) {
	base := a.cfg.TenantBase(tc.Name)
	up := tc.Upstream
	if up.Timeout == 0 {
		up.Timeout = config.DefaultUpstream().Timeout
	}
	b, err := a.upstreamBackend(key+".upstream", up)
	if err != nil {
		return nil, err
	}
	az := tc.Authorization
	secret := ""
	if az.ClientSecretEnv != "" {
		secret, _ = a.lookup(az.ClientSecretEnv)
		if secret == "" && az.Mode == external.ModeIntrospection {
			return nil, fmt.Errorf("%s.authorization.client_secret_env: the variable %s is empty", key, az.ClientSecretEnv)
		}
	}
	audience := az.Audience
	if audience == "" {
		audience = base
	}
	xc := external.Config{
		Issuer: az.Issuer, Audience: audience, Mode: az.Mode, ClientID: az.ClientID, ClientSecret: secret,
		CacheMax: az.CacheMax,
		Claims: external.Claims{Patient: az.Claims.Patient, FHIRUser: az.Claims.FHIRUser, Scope: az.Claims.Scope,
			Roles: az.Claims.Roles, Client: az.Claims.Client},
	}
	if az.RoleClearance {
		xc.Roles = a.cfg.Policy.Roles
	}
	ver, err := external.New(ctx, xc)
	if err != nil {
		return nil, fmt.Errorf("%s.authorization: %w", key, err)
	}
	versions := tc.SMARTVersions
	if len(versions) == 0 {
		versions = []string{"v1", "v2"}
	}
	userAccess := tc.UserAccess
	if userAccess == "" {
		userAccess = a.cfg.Policy.UserAccess
	}
	ua, err := policy.NewUserAccess(userAccess, careTeamSource{b: b, reg: a.registry})
	if err != nil {
		return nil, fmt.Errorf("%s.user_access: %w", key, err)
	}
	// Security labels and patient Consents bind a tenant as they bind the default FHIR base; the
	// tenant's Consents are read from, and invalidated by writes to, its own backend.
	pcfg := policy.Config{
		Registry: a.registry, Matcher: deps.matcher, Membership: deps.membership, BaseURL: base,
		UserAccess: ua, MaxUserPatients: a.cfg.Policy.MaxUserPatients, DenyAsForbidden: !a.cfg.Policy.HideExistence,
		Labels: labelPolicy(a.cfg.Policy),
	}
	consents := newConsentStore(b, a.registry, a.cfg.Policy.Consent.CacheTTL)
	consents.share(a.sharedConsents(), consentScope(tc.Name))
	watched := consents.watch(b)
	if a.cfg.Policy.Consent.Enforce {
		pcfg.Consents = consents
	}
	engine, err := policy.New(pcfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defCount, maxCount := a.cfg.FHIR.DefaultCount, a.cfg.FHIR.MaxCount
	if tc.DefaultCount > 0 {
		defCount = tc.DefaultCount
	}
	if tc.MaxCount > 0 {
		maxCount = tc.MaxCount
	}
	disc := ver.Discovery()
	security, err := json.Marshal(tenantSecurity(disc))
	if err != nil {
		return nil, err
	}
	limits := a.cfg.Gateway.FHIRLimits
	api, err := fhirapi.New(fhirapi.Options{
		Backend: timedBackend{watched, a.metrics}, Registry: a.registry, Validator: deps.validator,
		Authenticator: smartVersions{next: ver, v1: slices.Contains(versions, "v1"), v2: slices.Contains(versions, "v2")},
		Policy:        engine, Observe: a.observeDecision, Audit: tenantRecorder{next: a.audit, tenant: tc.Name},
		// AuditLog stays nil: the audit trail spans every tenant and is read on the admin side,
		// never through a tenant's FHIR API.
		Bundles: &bundle.Processor{
			Backend: watched, Validator: deps.bundleVal, BaseURL: base,
			Parse:      bundle.SearchParser(a.registry, base, maxCount),
			MaxEntries: a.cfg.Gateway.FHIRLimits.MaxBundleEntries, Log: a.log,
		},
		BaseURL: base, DefaultCount: defCount, MaxCount: maxCount, PageKey: tenantPageKey(deps.pageKey, tc.Name),
		MaxBodyBytes: a.cfg.Gateway.BodyLimit(config.GroupFHIR), Security: security,
		Limits: fhirapi.Limits{
			MaxSearchParams: limits.MaxSearchParams, MaxIncludes: limits.MaxIncludes, QueryTimeout: limits.QueryTimeout,
		},
		Software: "fhirgate", Version: a.version, Logger: a.log.With("tenant", tc.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	sc, err := json.Marshal(tenantSMARTConfig(disc, versions))
	if err != nil {
		return nil, err
	}
	return &tenant{name: tc.Name, base: base, api: api, smartConfig: sc}, nil
}

// tenantSMARTConfig is the SMART App Launch discovery document of a tenant: the external
// issuer's endpoints, and the capabilities of the tenant's SMART versions.
func tenantSMARTConfig(d external.Discovery, versions []string) map[string]any {
	caps := []string{"launch-standalone", "client-public", "client-confidential-symmetric", "context-standalone-patient",
		"permission-patient", "permission-user", "permission-offline"}
	for _, v := range versions {
		caps = append(caps, "permission-"+v)
	}
	doc := map[string]any{
		"issuer": d.Issuer, "jwks_uri": d.JWKSURI,
		"authorization_endpoint": d.AuthorizationEndpoint, "token_endpoint": d.TokenEndpoint,
		"capabilities": caps, "code_challenge_methods_supported": []string{"S256"},
		"response_types_supported": []string{"code"},
	}
	for k, v := range map[string]string{"introspection_endpoint": d.IntrospectionEndpoint, "revocation_endpoint": d.RevocationEndpoint, "registration_endpoint": d.RegistrationEndpoint} {
		if v != "" {
			doc[k] = v
		}
	}
	if len(d.ScopesSupported) > 0 {
		doc["scopes_supported"] = d.ScopesSupported
	}
	return doc
}

// tenantSecurity is the CapabilityStatement rest.security of a tenant (the SMART OAuth URIs
// extension pointing to its issuer).
func tenantSecurity(d external.Discovery) map[string]any {
	ext := []map[string]any{{"url": "authorize", "valueUri": d.AuthorizationEndpoint}, {"url": "token", "valueUri": d.TokenEndpoint}}
	return map[string]any{
		"service": []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}}}},
		"extension": []any{map[string]any{
			"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": ext,
		}},
	}
}

// smartVersions drops the resource scopes written in a SMART syntax the tenant does not accept:
// they grant nothing there.
type smartVersions struct {
	next   fhirapi.Authenticator
	v1, v2 bool
}

func (s smartVersions) Authenticate(ctx context.Context, authorization string) (*authn.Principal, error) {
	p, err := s.next.Authenticate(ctx, authorization)
	if err != nil || (s.v1 && s.v2) {
		return p, err
	}
	// A copy: the verifier may hand the same cached principal to concurrent requests.
	cp := *p
	p = &cp
	p.DroppedScopes = slices.Clone(p.DroppedScopes)
	keep := p.Scopes[:0:0]
	for _, sc := range p.Scopes {
		if sc.IsResource() && ((sc.Syntax == smart.SyntaxV1 && !s.v1) || (sc.Syntax == smart.SyntaxV2 && !s.v2)) {
			p.DroppedScopes = append(p.DroppedScopes, sc.String())
			continue
		}
		keep = append(keep, sc)
	}
	p.Scopes = keep
	return p, nil
}

// mountTenants serves each tenant's FHIR API at /t/{name}/fhir (the API sees /fhir/...) and its
// smart-configuration, behind the same gateway groups as the default tenant.
func (a *App) mountTenants(mux *http.ServeMux, wrap func(group string, h http.Handler) http.Handler) {
	for _, t := range a.tenants {
		prefix := "/t/" + t.name
		fhirH := wrap(config.GroupFHIR, http.StripPrefix(prefix, t.api))
		mux.Handle(prefix+"/fhir", fhirH)
		mux.Handle(prefix+"/fhir/", fhirH)
		sc := t.smartConfig
		disc := wrap(config.GroupDiscovery, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(sc)
		}))
		mux.Handle(prefix+"/fhir/.well-known/smart-configuration", disc)
		mux.Handle(prefix+"/fhir/metadata", wrap(config.GroupDiscovery, http.StripPrefix(prefix, t.api)))
	}
}

// tenantRecorder marks every audit event of a tenant's FHIR API with the tenant (the BALP
// AuditEvent's source site).
type tenantRecorder struct {
	next   audit.Recorder
	tenant string
}

func (t tenantRecorder) Record(ctx context.Context, e audit.Event) error {
	e.Tenant = t.tenant
	return t.next.Record(ctx, e)
}

// tenantPageKey derives a tenant's paging-link key from the deployment's, so that a page link
// of one tenant is never valid on another (every tenant's API sees the same /fhir paths). Nil
// stays nil: the API then makes a random key of its own.
func tenantPageKey(key []byte, tenant string) []byte {
	if len(key) == 0 {
		return nil
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("fhirgate tenant page links\x00" + tenant))
	return m.Sum(nil)
}
