package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Route groups the gateway knows. Every public route belongs to exactly one.
const (
	GroupFHIR      = "fhir"      // /fhir/... (the FHIR REST API, PHI)
	GroupOAuth     = "oauth"     // /auth/token, /auth/introspect, /auth/revoke, /auth/register, ...
	GroupLogin     = "login"     // login, consent and patient-picker pages and their form posts
	GroupAdmin     = "admin"     // the admin listener
	GroupDiscovery = "discovery" // /.well-known/..., /fhir/metadata
)

// Groups lists the route groups in a stable order.
var Groups = []string{GroupFHIR, GroupOAuth, GroupLogin, GroupAdmin, GroupDiscovery}

// Gateway configures the HTTP protections in front of every route group: client IP resolution
// behind proxies, IP rules, CORS, request limits, rate limits, TLS and security headers.
type Gateway struct {
	// MaxBodyBytes caps a request body (413) unless the route group sets its own.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxHeaderBytes caps the request line and headers; the HTTP server enforces it (431).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxURLLength caps the request target, path and query (414).
	MaxURLLength int `yaml:"max_url_length"`
	// MaxQueryParams caps the number of query parameters (400).
	MaxQueryParams int `yaml:"max_query_params"`
	// ReadHeaderTimeout bounds reading the request headers (slowloris); the HTTP server enforces it.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// TrustedProxies are the CIDRs of reverse proxies whose forwarding header is believed. The
	// header is ignored from every other peer. Empty: the TCP peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardedHeader names the header the trusted proxies set: x-forwarded-for (with
	// X-Forwarded-Proto) or forwarded (RFC 7239).
	ForwardedHeader string `yaml:"forwarded_header"`
	// Groups holds the per-route-group settings.
	Groups GatewayGroups `yaml:"groups"`
	// RateLimit configures the rate limiter engine and its rules.
	RateLimit RateLimit `yaml:"rate_limit"`
	// CORS configures cross-origin access for browser SMART apps.
	CORS CORS `yaml:"cors"`
	// TLS configures HTTPS and mutual TLS on the public listener.
	TLS TLS `yaml:"tls"`
	// Headers tunes the security response headers.
	Headers SecurityHeaders `yaml:"headers"`
	// FHIRLimits are request-shape limits the FHIR API enforces.
	FHIRLimits FHIRLimits `yaml:"fhir_limits"`
	// Tracing configures OpenTelemetry traces (off unless an endpoint is set).
	Tracing Tracing `yaml:"tracing"`
}

// GatewayGroups holds one GroupPolicy per route group.
type GatewayGroups struct {
	FHIR      GroupPolicy `yaml:"fhir"`
	OAuth     GroupPolicy `yaml:"oauth"`
	Login     GroupPolicy `yaml:"login"`
	Admin     GroupPolicy `yaml:"admin"`
	Discovery GroupPolicy `yaml:"discovery"`
}

// Get returns the policy of a route group, or false for an unknown name.
func (g *GatewayGroups) Get(group string) (GroupPolicy, bool) {
	switch group {
	case GroupFHIR:
		return g.FHIR, true
	case GroupOAuth:
		return g.OAuth, true
	case GroupLogin:
		return g.Login, true
	case GroupAdmin:
		return g.Admin, true
	case GroupDiscovery:
		return g.Discovery, true
	}
	return GroupPolicy{}, false
}

// GroupPolicy is the IP, size, time and failure policy of one route group.
type GroupPolicy struct {
	// Allow lists the client CIDRs (or bare IPs) admitted; empty admits every address.
	Allow []string `yaml:"allow"`
	// Deny lists client CIDRs refused (403); deny wins over allow.
	Deny []string `yaml:"deny"`
	// MaxBodyBytes overrides gateway.max_body_bytes for this group; 0 keeps it.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// RequestTimeout is the deadline put on the request context; 0 sets none.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// RateLimitFailOpen admits requests when the rate limiter engine is unreachable; false answers
	// 503 instead.
	RateLimitFailOpen bool `yaml:"rate_limit_fail_open"`
	// RequireClientCert refuses requests (403) that did not present a verified TLS client
	// certificate; needs gateway.tls.client_auth optional or require.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// RateLimit selects the engine and lists the quotas.
type RateLimit struct {
	// Enabled turns rate limiting on.
	Enabled bool `yaml:"enabled"`
	// Engine is memory (one instance) or redis (shared by every instance).
	Engine string `yaml:"engine"`
	// MaxKeys bounds the buckets the memory engine keeps.
	MaxKeys int `yaml:"max_keys"`
	// Redis configures the redis engine.
	Redis RateLimitRedis `yaml:"redis"`
	// Rules are the quotas; a request spends in every rule of its group.
	Rules []RateLimitRule `yaml:"rules"`
}

// RateLimitRedis configures the connection of the redis engine.
type RateLimitRedis struct {
	// Addr is host:port of the Redis server.
	Addr string `yaml:"addr"`
	// Username is the Redis ACL user, if any.
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the Redis password, if any.
	PasswordEnv string `yaml:"password_env"`
	// DB is the Redis database number.
	DB int `yaml:"db"`
	// TLS connects with TLS.
	TLS bool `yaml:"tls"`
	// Timeout bounds each rate-limit call; past it the group's failure mode applies.
	Timeout time.Duration `yaml:"timeout"`
	// KeyPrefix starts every key the limiter writes.
	KeyPrefix string `yaml:"key_prefix"`
}

// Rate-limit key dimensions.
const (
	RateByIP      = "ip"      // the client IP (after trusted proxies)
	RateByClient  = "client"  // the OAuth client_id of the token
	RateByUser    = "user"    // the token subject
	RateByPatient = "patient" // the patient in context of the token
	RateByGroup   = "group"   // one bucket for the whole route group
)

// RateLimitRule is one quota: Rate requests (or cost points) per Period, per key.
type RateLimitRule struct {
	// Name identifies the rule in keys, logs and headers; unique.
	Name string `yaml:"name"`
	// Groups are the route groups the rule applies to.
	Groups []string `yaml:"groups"`
	// By is the bucket key: ip, client, user, patient or group.
	By string `yaml:"by"`
	// Rate is the number of points refilled per Period.
	Rate int `yaml:"rate"`
	// Period is the refill window.
	Period time.Duration `yaml:"period"`
	// Burst is the bucket size; 0 means Rate.
	Burst int `yaml:"burst"`
	// Weighted spends the request's cost (gateway.Cost) instead of 1 point.
	Weighted bool `yaml:"weighted"`
}

// CORS configures cross-origin access. Discovery is open to every origin; the FHIR API and the
// OAuth endpoints admit the origins of registered clients' redirect URIs plus ExtraOrigins.
type CORS struct {
	// ExtraOrigins are further origins (scheme://host[:port]) admitted on the FHIR and OAuth groups.
	ExtraOrigins []string `yaml:"extra_origins"`
	// MaxAge lets browsers cache a preflight answer.
	MaxAge time.Duration `yaml:"max_age"`
}

// TLS configures HTTPS and mutual TLS.
type TLS struct {
	// CertFile and KeyFile hold the PEM server certificate chain and key; both set enables TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// MinVersion is 1.2 or 1.3.
	MinVersion string `yaml:"min_version"`
	// ClientAuth is none, optional (verify a certificate if sent) or require.
	ClientAuth string `yaml:"client_auth"`
	// ClientCAFile holds the PEM CA certificates that client certificates must chain to.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether the public listener serves HTTPS.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// SecurityHeaders tunes the response headers the gateway adds.
type SecurityHeaders struct {
	// HSTSMaxAge is the Strict-Transport-Security max-age sent on HTTPS responses; 0 disables HSTS.
	HSTSMaxAge time.Duration `yaml:"hsts_max_age"`
	// HSTSIncludeSubdomains adds includeSubDomains.
	HSTSIncludeSubdomains bool `yaml:"hsts_include_subdomains"`
	// PageCSP is the Content-Security-Policy of the login group's HTML pages.
	PageCSP string `yaml:"page_csp"`
}

// FHIRLimits are limits on the shape of FHIR requests. The gateway defines them; the FHIR API
// enforces them (the _count ceiling is fhir.max_count).
type FHIRLimits struct {
	// MaxBundleEntries caps the entries of a transaction or batch Bundle (413).
	MaxBundleEntries int `yaml:"max_bundle_entries"`
	// MaxSearchParams caps the search parameters of one search (400).
	MaxSearchParams int `yaml:"max_search_params"`
	// MaxIncludes caps _include plus _revinclude parameters of one search (400).
	MaxIncludes int `yaml:"max_includes"`
	// QueryTimeout bounds one search or read in the backend (503 past it).
	QueryTimeout time.Duration `yaml:"query_timeout"`
}

// Tracing configures OpenTelemetry tracing. Nothing is recorded or exported unless Endpoint is
// set; incoming W3C traceparent headers are then continued.
type Tracing struct {
	// Endpoint is the OTLP/HTTP traces URL (https://collector:4318/v1/traces); empty: off.
	Endpoint string `yaml:"endpoint"`
	// ServiceName is the service.name resource attribute.
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of new traces recorded, 0..1; a sampled parent is always followed.
	SampleRatio float64 `yaml:"sample_ratio"`
}

// Enabled reports whether traces are exported.
func (t Tracing) Enabled() bool { return t.Endpoint != "" }

func (t Tracing) validate(v *Problems) {
	if t.SampleRatio < 0 || t.SampleRatio > 1 || t.SampleRatio != t.SampleRatio {
		v.Add("gateway.tracing.sample_ratio", "must be between 0 and 1")
	}
	if t.Endpoint != "" {
		u, err := url.Parse(t.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			v.Add("gateway.tracing.endpoint", "must be an http(s) URL without credentials, got %q", t.Endpoint)
		}
	}
	if t.ServiceName == "" {
		v.Add("gateway.tracing.service_name", "must not be empty")
	}
}

// DefaultGateway returns the gateway defaults: secure for a single instance on loopback.
func DefaultGateway() Gateway {
	return Gateway{
		MaxBodyBytes:      16 << 20,
		MaxHeaderBytes:    64 << 10,
		MaxURLLength:      8192,
		MaxQueryParams:    100,
		ReadHeaderTimeout: 10 * time.Second,
		ForwardedHeader:   "x-forwarded-for",
		Groups: GatewayGroups{
			FHIR:      GroupPolicy{RequestTimeout: 60 * time.Second, RateLimitFailOpen: true},
			OAuth:     GroupPolicy{MaxBodyBytes: 64 << 10, RequestTimeout: 15 * time.Second},
			Login:     GroupPolicy{MaxBodyBytes: 64 << 10, RequestTimeout: 15 * time.Second},
			Admin:     GroupPolicy{Allow: []string{"127.0.0.0/8", "::1/128"}, RequestTimeout: 60 * time.Second},
			Discovery: GroupPolicy{MaxBodyBytes: 1024, RequestTimeout: 15 * time.Second, RateLimitFailOpen: true},
		},
		RateLimit: RateLimit{
			Enabled: true,
			Engine:  "memory",
			MaxKeys: 100_000,
			Redis:   RateLimitRedis{Timeout: 100 * time.Millisecond, KeyPrefix: "fhirgate:rl:"},
			Rules: []RateLimitRule{
				{Name: "fhir-ip", Groups: []string{GroupFHIR}, By: RateByIP, Rate: 1200, Period: time.Minute, Weighted: true},
				{Name: "fhir-client", Groups: []string{GroupFHIR}, By: RateByClient, Rate: 3000, Period: time.Minute, Weighted: true},
				{Name: "fhir-user", Groups: []string{GroupFHIR}, By: RateByUser, Rate: 600, Period: time.Minute, Weighted: true},
				{Name: "fhir-patient", Groups: []string{GroupFHIR}, By: RateByPatient, Rate: 100, Period: time.Minute, Weighted: true},
				{Name: "oauth-ip", Groups: []string{GroupOAuth}, By: RateByIP, Rate: 60, Period: time.Minute, Burst: 20},
				{Name: "login-ip", Groups: []string{GroupLogin}, By: RateByIP, Rate: 20, Period: time.Minute, Burst: 10},
				{Name: "discovery-ip", Groups: []string{GroupDiscovery}, By: RateByIP, Rate: 600, Period: time.Minute},
				{Name: "admin-ip", Groups: []string{GroupAdmin}, By: RateByIP, Rate: 600, Period: time.Minute},
			},
		},
		CORS: CORS{MaxAge: 10 * time.Minute},
		TLS:  TLS{MinVersion: "1.2", ClientAuth: "none"},
		Headers: SecurityHeaders{
			HSTSMaxAge: 365 * 24 * time.Hour,
			PageCSP:    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
		},
		FHIRLimits: FHIRLimits{
			MaxBundleEntries: 1000,
			MaxSearchParams:  30,
			MaxIncludes:      10,
			QueryTimeout:     30 * time.Second,
		},
		Tracing: Tracing{ServiceName: "fhirgate", SampleRatio: 1},
	}
}

// BodyLimit is the body cap of a route group: its own max_body_bytes, else the gateway's.
func (g *Gateway) BodyLimit(group string) int64 {
	if p, ok := g.Groups.Get(group); ok && p.MaxBodyBytes > 0 {
		return p.MaxBodyBytes
	}
	return g.MaxBodyBytes
}

// ParseCIDRList parses CIDRs or bare IP addresses (a host prefix). It returns the prefixes
// parsed and, for each bad entry, an error naming its index.
func ParseCIDRList(list []string) ([]netip.Prefix, []error) {
	out := make([]netip.Prefix, 0, len(list))
	var errs []error
	for i, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("[%d] %q is not a CIDR", i, s))
				continue
			}
			if p.Addr().Zone() != "" {
				errs = append(errs, fmt.Errorf("[%d] %q has a zone", i, s))
				continue
			}
			if a := p.Addr(); a.Is4In6() {
				// Client addresses are compared unmapped; so are the rules.
				if p.Bits() < 96 {
					errs = append(errs, fmt.Errorf("[%d] %q is an IPv4-mapped prefix shorter than /96", i, s))
					continue
				}
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("[%d] %q is not an IP address or CIDR", i, s))
			continue
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errs
}

func (g *Gateway) validate(v *Problems) {
	if g.MaxBodyBytes < 1024 {
		v.Add("gateway.max_body_bytes", "must be at least 1024")
	}
	if g.MaxHeaderBytes < 4096 {
		v.Add("gateway.max_header_bytes", "must be at least 4096")
	}
	if g.MaxURLLength < 256 {
		v.Add("gateway.max_url_length", "must be at least 256")
	}
	if g.MaxQueryParams < 1 {
		v.Add("gateway.max_query_params", "must be at least 1")
	}
	if g.ReadHeaderTimeout <= 0 {
		v.Add("gateway.read_header_timeout", "must be positive")
	}
	for _, err := range cidrErrs(g.TrustedProxies) {
		v.Add("gateway.trusted_proxies", "%v", err)
	}
	switch g.ForwardedHeader {
	case "x-forwarded-for", "forwarded":
	default:
		v.Add("gateway.forwarded_header", "must be x-forwarded-for or forwarded, got %q", g.ForwardedHeader)
	}
	for _, name := range Groups {
		p, _ := g.Groups.Get(name)
		key := "gateway.groups." + name
		for _, err := range cidrErrs(p.Allow) {
			v.Add(key+".allow", "%v", err)
		}
		for _, err := range cidrErrs(p.Deny) {
			v.Add(key+".deny", "%v", err)
		}
		if p.MaxBodyBytes < 0 {
			v.Add(key+".max_body_bytes", "must not be negative")
		}
		if p.RequestTimeout < 0 {
			v.Add(key+".request_timeout", "must not be negative")
		}
		if p.RequireClientCert && g.TLS.ClientAuth != "optional" && g.TLS.ClientAuth != "require" {
			v.Add(key+".require_client_cert", "needs gateway.tls.client_auth optional or require")
		}
	}
	g.RateLimit.validate(v)
	for i, o := range g.CORS.ExtraOrigins {
		if !IsOrigin(o) {
			v.Add(fmt.Sprintf("gateway.cors.extra_origins[%d]", i), "must be an origin scheme://host[:port] without path, got %q", o)
		}
	}
	if g.CORS.MaxAge < 0 {
		v.Add("gateway.cors.max_age", "must not be negative")
	}
	g.TLS.validate(v)
	g.Tracing.validate(v)
	if g.Headers.HSTSMaxAge < 0 {
		v.Add("gateway.headers.hsts_max_age", "must not be negative")
	}
	if strings.ContainsAny(g.Headers.PageCSP, "\r\n") {
		v.Add("gateway.headers.page_csp", "must be one line")
	}
	if g.FHIRLimits.MaxBundleEntries < 1 {
		v.Add("gateway.fhir_limits.max_bundle_entries", "must be at least 1")
	}
	if g.FHIRLimits.MaxSearchParams < 1 {
		v.Add("gateway.fhir_limits.max_search_params", "must be at least 1")
	}
	if g.FHIRLimits.MaxIncludes < 0 {
		v.Add("gateway.fhir_limits.max_includes", "must not be negative")
	}
	if g.FHIRLimits.QueryTimeout <= 0 {
		v.Add("gateway.fhir_limits.query_timeout", "must be positive")
	}
}

func (r *RateLimit) validate(v *Problems) {
	switch r.Engine {
	case "memory":
		if r.MaxKeys < 1000 {
			v.Add("gateway.rate_limit.max_keys", "must be at least 1000")
		}
	case "redis":
		if r.Redis.Addr == "" {
			v.Add("gateway.rate_limit.redis.addr", "must be set for the redis engine")
		}
		if r.Redis.DB < 0 {
			v.Add("gateway.rate_limit.redis.db", "must not be negative")
		}
		if r.Redis.Timeout <= 0 {
			v.Add("gateway.rate_limit.redis.timeout", "must be positive")
		}
	default:
		v.Add("gateway.rate_limit.engine", "must be memory or redis, got %q", r.Engine)
	}
	if r.Redis.Addr != "" {
		if _, _, err := net.SplitHostPort(r.Redis.Addr); err != nil {
			v.Add("gateway.rate_limit.redis.addr", "must be host:port, got %q", r.Redis.Addr)
		}
	}
	seen := map[string]bool{}
	for i, rule := range r.Rules {
		key := fmt.Sprintf("gateway.rate_limit.rules[%d]", i)
		if rule.Name == "" || strings.ContainsAny(rule.Name, ": \t\r\n{}") {
			v.Add(key+".name", "must be set, without spaces, ':' or braces, got %q", rule.Name)
		} else if seen[rule.Name] {
			v.Add(key+".name", "duplicate rule name %q", rule.Name)
		}
		seen[rule.Name] = true
		if len(rule.Groups) == 0 {
			v.Add(key+".groups", "must name at least one route group")
		}
		for j, grp := range rule.Groups {
			if !slices.Contains(Groups, grp) {
				v.Add(fmt.Sprintf("%s.groups[%d]", key, j), "must be one of %s, got %q", strings.Join(Groups, ", "), grp)
			}
		}
		switch rule.By {
		case RateByIP, RateByClient, RateByUser, RateByPatient, RateByGroup:
		default:
			v.Add(key+".by", "must be ip, client, user, patient or group, got %q", rule.By)
		}
		if rule.Rate < 1 {
			v.Add(key+".rate", "must be at least 1")
		}
		if rule.Period < time.Second {
			v.Add(key+".period", "must be at least 1s")
		}
		if rule.Burst < 0 {
			v.Add(key+".burst", "must not be negative")
		}
	}
}

func (t *TLS) validate(v *Problems) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.Add("gateway.tls.cert_file", "cert_file and key_file must be set together")
	}
	switch t.MinVersion {
	case "1.2", "1.3":
	default:
		v.Add("gateway.tls.min_version", "must be 1.2 or 1.3, got %q", t.MinVersion)
	}
	switch t.ClientAuth {
	case "none":
	case "optional", "require":
		if !t.Enabled() {
			v.Add("gateway.tls.client_auth", "%s needs gateway.tls.cert_file and key_file", t.ClientAuth)
		}
		if t.ClientCAFile == "" {
			v.Add("gateway.tls.client_ca_file", "must be set when client_auth is %s", t.ClientAuth)
		}
	default:
		v.Add("gateway.tls.client_auth", "must be none, optional or require, got %q", t.ClientAuth)
	}
}

// IsOrigin reports whether s is a serialized web origin: http or https, a host, an optional
// port, and nothing else.
func IsOrigin(s string) bool {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" {
		return false
	}
	if strings.ContainsAny(rest, "/?#@ \\") || strings.ToLower(s) != s {
		return false
	}
	host, _, err := net.SplitHostPort(rest)
	if err != nil {
		host = rest
	}
	return host != "" && !strings.HasPrefix(host, ".")
}

func cidrErrs(list []string) []error {
	_, errs := ParseCIDRList(list)
	return errs
}
