package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Upstream makes fhirgate a proxy: when URL is set, the FHIR API's resources live on that
// existing FHIR server (HAPI, Microsoft FHIR Server, a cloud healthcare API) instead of the
// embedded store, and fhirgate secures it exactly as it secures its own store
// (docs/proxy.md). The store still holds the authorization server's data and the audit trail.
type Upstream struct {
	// URL is the upstream FHIR base; empty serves the embedded store.
	URL string `yaml:"url"`
	// Timeout bounds one upstream interaction; a slower upstream is answered 504.
	Timeout time.Duration `yaml:"timeout"`
	// TrustTotals passes the upstream's Bundle.total on. Off by default: an upstream that
	// ignored a narrowing parameter would count resources the caller may not see.
	TrustTotals bool `yaml:"trust_totals"`
	// MaxResponseBytes caps one upstream answer.
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
	// Auth is how fhirgate authenticates to the upstream.
	Auth UpstreamAuth `yaml:"auth"`
}

// UpstreamAuth is fhirgate's own credential at the upstream. Secrets are read from the
// environment variables named here, never from the file, and never logged.
type UpstreamAuth struct {
	// Mode is none, header or client_credentials.
	Mode string `yaml:"mode"`
	// Header is the header name of mode header (Authorization, X-API-Key).
	Header string `yaml:"header"`
	// ValueEnv names the variable holding the header value (mode header).
	ValueEnv string `yaml:"value_env"`
	// TokenURL, ClientID and ClientSecretEnv are the OAuth client_credentials grant; Scopes
	// are requested with it.
	TokenURL        string   `yaml:"token_url"`
	ClientID        string   `yaml:"client_id"`
	ClientSecretEnv string   `yaml:"client_secret_env"`
	Scopes          []string `yaml:"scopes"`
}

// FHIRSecurity switches the FHIR API's token checks. Mode off serves every FHIR interaction to
// anyone, as a system client with every permission: it exists to run fhirgate as the plain FHIR
// server behind another fhirgate (or in a test), and is refused on a non-loopback address
// unless AllowNonLoopback says otherwise. fhirgate logs a warning at every start in this mode.
type FHIRSecurity struct {
	// Mode is smart (the default: SMART tokens and the policy) or off.
	Mode string `yaml:"mode"`
	// AllowNonLoopback permits mode off on an address other than loopback (a private network
	// the operator controls).
	AllowNonLoopback bool `yaml:"allow_non_loopback"`
}

// The FHIR security modes.
const (
	FHIRSecuritySMART = "smart"
	FHIRSecurityOff   = "off"
)

// DefaultUpstream is the proxy defaults: off, 30 s per interaction, 64 MiB answers.
func DefaultUpstream() Upstream {
	return Upstream{Timeout: 30 * time.Second, MaxResponseBytes: 64 << 20, Auth: UpstreamAuth{Mode: "none"}}
}

// Unsecured reports whether the FHIR API runs without token checks.
func (c *Config) Unsecured() bool { return c.FHIR.Security.Mode == FHIRSecurityOff }

func (c *Config) validateUpstream(v *Problems) {
	switch c.FHIR.Security.Mode {
	case "", FHIRSecuritySMART:
	case FHIRSecurityOff:
		if !c.FHIR.Security.AllowNonLoopback && !loopbackAddr(c.Addr) {
			v.Add("fhir.security.mode", "off serves every resource to anyone: addr %q is not loopback (set fhir.security.allow_non_loopback to accept that)", c.Addr)
		}
	default:
		v.Add("fhir.security.mode", "must be smart or off, got %q", c.FHIR.Security.Mode)
	}
	u := c.Upstream
	if u.URL == "" {
		return
	}
	if p, err := url.Parse(u.URL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.RawQuery != "" || p.Fragment != "" {
		v.Add("upstream.url", "must be an absolute http(s) URL without query or fragment, got %q", u.URL)
	} else if p.User != nil {
		v.Add("upstream.url", "must not carry credentials; use upstream.auth")
	}
	if u.Timeout <= 0 {
		v.Add("upstream.timeout", "must be positive")
	}
	if u.MaxResponseBytes < 1024 {
		v.Add("upstream.max_response_bytes", "must be at least 1024")
	}
	a := u.Auth
	switch a.Mode {
	case "", "none":
	case "header":
		if strings.TrimSpace(a.Header) == "" {
			v.Add("upstream.auth.header", "must name the header for mode header")
		}
		if a.ValueEnv == "" {
			v.Add("upstream.auth.value_env", "must name the variable holding the header value")
		}
	case "client_credentials":
		if tu, err := url.Parse(a.TokenURL); err != nil || (tu.Scheme != "https" && tu.Scheme != "http") || tu.Host == "" {
			v.Add("upstream.auth.token_url", "must be an absolute http(s) URL, got %q", a.TokenURL)
		}
		if a.ClientID == "" {
			v.Add("upstream.auth.client_id", "must be set for client_credentials")
		}
		if a.ClientSecretEnv == "" {
			v.Add("upstream.auth.client_secret_env", "must name the variable holding the client secret")
		}
	default:
		v.Add("upstream.auth.mode", "must be none, header or client_credentials, got %q", a.Mode)
	}
}

// loopbackAddr reports whether a listen address binds loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
