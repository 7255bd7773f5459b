package config

import (
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Tenant is one more FHIR base served by this deployment, at {base_url}/t/{name}/fhir, with its
// own data (an upstream FHIR server), its own authorization server, SMART versions, access
// strategy and limits (docs/multi-tenancy.md). The default tenant is {base_url}/fhir, configured
// by the top-level keys.
type Tenant struct {
	// Name is the path segment: lower-case letters, digits and '-', at most 40.
	Name string `yaml:"name"`
	// Upstream is the tenant's FHIR server; its URL is required (tenants do not share the
	// embedded store).
	Upstream Upstream `yaml:"upstream"`
	// Authorization is the external issuer whose tokens the tenant accepts.
	Authorization TenantAuthorization `yaml:"authorization"`
	// SMARTVersions are the scope syntaxes that grant access: v1, v2 or both (the default).
	SMARTVersions []string `yaml:"smart_versions"`
	// UserAccess is the user/ scope strategy: all, compartment or care-team.
	UserAccess string `yaml:"user_access"`
	// DefaultCount and MaxCount bound the tenant's search pages; 0 takes fhir.*.
	DefaultCount int `yaml:"default_count"`
	MaxCount     int `yaml:"max_count"`
}

// TenantAuthorization is a tenant's external authorization server.
type TenantAuthorization struct {
	// Issuer is the issuer URL; its OIDC discovery document is fetched at start.
	Issuer string `yaml:"issuer"`
	// Mode is jwks (signed JWT access tokens, keys from the discovery's jwks_uri) or
	// introspection (RFC 7662 at the discovery's introspection_endpoint).
	Mode string `yaml:"mode"`
	// Audience is what the tokens' aud must contain; the tenant's FHIR base when empty.
	Audience string `yaml:"audience"`
	// ClientID and ClientSecretEnv authenticate fhirgate at the introspection endpoint.
	ClientID        string `yaml:"client_id"`
	ClientSecretEnv string `yaml:"client_secret_env"`
	// CacheMax bounds how long an introspection answer is reused (never past the token's exp).
	CacheMax time.Duration `yaml:"cache_max"`
	// Claims map the issuer's claim names (dotted paths into nested objects allowed).
	Claims TenantClaims `yaml:"claims"`
	// RoleClearance gives the issuer's tokens the clearance and default purposes of use of the
	// policy.roles their mapped roles name (default false: the default clearance, no purpose).
	// The tokens' own clearance and purpose claims are never trusted, and they never break the
	// glass.
	RoleClearance bool `yaml:"role_clearance"`
}

// TenantClaims says where the issuer puts what fhirgate needs; empty keys take the SMART names.
type TenantClaims struct {
	Patient  string `yaml:"patient"`
	FHIRUser string `yaml:"fhir_user"`
	Scope    string `yaml:"scope"`
	Roles    string `yaml:"roles"`
	Client   string `yaml:"client"`
}

var tenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// TenantBase is the FHIR base of a tenant, {base_url}/t/{name}/fhir.
func (c *Config) TenantBase(name string) string { return c.Issuer() + "/t/" + name + "/fhir" }

func (c *Config) validateTenants(v *Problems) {
	seen := map[string]bool{}
	for i, t := range c.Tenants {
		key := fmt.Sprintf("tenants[%d]", i)
		if !tenantName.MatchString(t.Name) {
			v.Add(key+".name", "must be 1-40 lower-case letters, digits or '-', starting with a letter or digit, got %q", t.Name)
		} else if seen[t.Name] {
			v.Add(key+".name", "duplicate tenant %q", t.Name)
		}
		seen[t.Name] = true
		if t.Upstream.URL == "" {
			v.Add(key+".upstream.url", "must be set: a tenant's data lives on its own FHIR server")
		} else {
			var sub Problems
			tmp := Config{Upstream: t.Upstream, Addr: c.Addr}
			if tmp.Upstream.Timeout == 0 {
				tmp.Upstream.Timeout = DefaultUpstream().Timeout
			}
			if tmp.Upstream.MaxResponseBytes == 0 {
				tmp.Upstream.MaxResponseBytes = DefaultUpstream().MaxResponseBytes
			}
			tmp.validateUpstream(&sub)
			for _, p := range sub.list {
				v.list = append(v.list, key+"."+p)
			}
		}
		a := t.Authorization
		if u, err := url.Parse(a.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.Add(key+".authorization.issuer", "must be the absolute http(s) URL of the tenant's authorization server, got %q", a.Issuer)
		}
		switch a.Mode {
		case "jwks":
		case "introspection":
			if a.ClientID == "" {
				v.Add(key+".authorization.client_id", "must be set for introspection")
			}
			if a.ClientSecretEnv == "" {
				v.Add(key+".authorization.client_secret_env", "must name the variable holding the introspection client secret")
			}
		default:
			v.Add(key+".authorization.mode", "must be jwks or introspection, got %q", a.Mode)
		}
		if a.RoleClearance && len(c.Policy.Roles) == 0 {
			v.Add(key+".authorization.role_clearance", "needs policy.roles: no role is defined to give a clearance")
		}
		if a.CacheMax < 0 {
			v.Add(key+".authorization.cache_max", "must not be negative")
		}
		for j, s := range t.SMARTVersions {
			if s != "v1" && s != "v2" {
				v.Add(fmt.Sprintf("%s.smart_versions[%d]", key, j), "must be v1 or v2, got %q", s)
			}
		}
		if t.UserAccess != "" {
			checkUserAccess(v, key+".user_access", t.UserAccess)
		}
		if t.DefaultCount < 0 || t.MaxCount < 0 || (t.MaxCount > 0 && t.MaxCount < t.DefaultCount) {
			v.Add(key+".max_count", "default_count and max_count must be positive, max_count at least default_count")
		}
	}
}
