// Package config owns fhirgate's typed configuration: defaults, the YAML file, FHIRGATE_* environment
// variables and flags layered in that order, and a Validate that reports every problem at once.
//
// Validation has no side effects; the composition root (internal/app) builds components from a
// validated Config.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole fhirgate configuration. The yaml tag of each field is its config key; the
// environment variable is FHIRGATE_ followed by the key path in upper case joined by '_'
// (storage.dsn → FHIRGATE_STORAGE_DSN).
type Config struct {
	// BaseURL is the public URL of this server; the FHIR base is {base_url}/fhir and the OAuth
	// issuer is base_url itself.
	BaseURL string `yaml:"base_url"`
	// Addr is the listen address of the public HTTP server.
	Addr string `yaml:"addr"`
	// AdminAddr is the listen address of the admin API; loopback by default. Empty disables it.
	AdminAddr string `yaml:"admin_addr"`
	// AdminTokenEnv names the environment variable holding the admin API bearer token.
	AdminTokenEnv string `yaml:"admin_token_env"`
	// DataDir holds the embedded store and keys.
	DataDir string `yaml:"data_dir"`
	// Demo loads demo data, users and clients when the store is empty.
	Demo bool `yaml:"demo"`
	// DemoPatients is how many synthetic patients --demo generates.
	DemoPatients int `yaml:"demo_patients"`
	// Storage selects and configures the backend.
	Storage Storage `yaml:"storage"`
	// Log configures the structured logger.
	Log Log `yaml:"log"`
	// FHIR tunes the FHIR REST API.
	FHIR FHIR `yaml:"fhir"`
	// Clients are OAuth clients as RFC 7591 client metadata.
	Clients []Client `yaml:"clients"`
	// Users are local accounts linked to a FHIR resource.
	Users []User `yaml:"users"`
	// Auth tunes the authorization server.
	Auth Auth `yaml:"auth"`
	// Gateway configures rate limits, IP rules, CORS, request limits, TLS and security headers.
	Gateway Gateway `yaml:"gateway"`
	// Audit configures the audit trail.
	Audit Audit `yaml:"audit"`
	// Policy configures access decisions beyond the scopes (user/ reach, 404 vs 403, shadow).
	Policy Policy `yaml:"policy"`
	// Redis configures the state several instances share (revocations, jtis, login throttling, Consent change notices).
	Redis Redis `yaml:"redis"`
	// Upstream, when its URL is set, serves the FHIR resources from an existing FHIR server.
	Upstream Upstream `yaml:"upstream"`
	// Tenants are further FHIR bases at {base_url}/t/{name}/fhir.
	Tenants []Tenant `yaml:"tenants"`
}

// Storage selects the backend of every store.
type Storage struct {
	// Driver is sqlite (embedded, default) or postgres.
	Driver string `yaml:"driver"`
	// DSN is the PostgreSQL connection string; for sqlite it defaults to {data_dir}/fhirgate.db.
	DSN Secret `yaml:"dsn"`
	// MaxOpenConns bounds the connection pool (postgres).
	MaxOpenConns int `yaml:"max_open_conns"`
	// MaxIdleConns bounds idle connections kept in the pool (postgres).
	MaxIdleConns int `yaml:"max_idle_conns"`
	// ConnMaxLifetime recycles connections after this long (postgres).
	ConnMaxLifetime time.Duration `yaml:"conn_max_lifetime"`
}

// Log configures the structured logger.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// FHIR tunes the FHIR REST API.
type FHIR struct {
	// DefaultCount is the page size of a search without _count.
	DefaultCount int `yaml:"default_count"`
	// MaxCount caps _count.
	MaxCount int `yaml:"max_count"`
	// PageTokenKeyEnv names the environment variable with the key that signs paging links; when
	// unset a random key is made at start (links then do not survive a restart).
	PageTokenKeyEnv string `yaml:"page_token_key_env"`
	// Security switches the token checks (smart, or off for a plain upstream).
	Security FHIRSecurity `yaml:"security"`
}

// Client is an OAuth client registration in RFC 7591 client metadata form.
type Client struct {
	ClientID                string   `yaml:"client_id" json:"client_id"`
	ClientName              string   `yaml:"client_name" json:"client_name,omitempty"`
	ClientSecret            Secret   `yaml:"client_secret" json:"-"`
	RedirectURIs            []string `yaml:"redirect_uris" json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `yaml:"token_endpoint_auth_method" json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `yaml:"grant_types" json:"grant_types,omitempty"`
	Scope                   string   `yaml:"scope" json:"scope,omitempty"`
	JWKS                    any      `yaml:"jwks" json:"jwks,omitempty"`
	JWKSURI                 string   `yaml:"jwks_uri" json:"jwks_uri,omitempty"`
	LaunchURL               string   `yaml:"launch_url" json:"launch_url,omitempty"`
	Roles                   []string `yaml:"roles" json:"roles,omitempty"`
	// TLSClientAuthSubjectDN is the certificate subject (RFC 4514 string, as Go prints it:
	// "CN=backend,O=Example") a tls_client_auth client must present.
	TLSClientAuthSubjectDN string `yaml:"tls_client_auth_subject_dn" json:"tls_client_auth_subject_dn,omitempty"`
	// TLSClientAuthSANDNS is a DNS name the tls_client_auth client's certificate must carry; an
	// alternative to the subject DN.
	TLSClientAuthSANDNS string `yaml:"tls_client_auth_san_dns" json:"tls_client_auth_san_dns,omitempty"`
	// CertificateBoundAccessTokens binds the client's access (and refresh) tokens to the TLS
	// client certificate it presents at the token endpoint (RFC 8705 section 3).
	CertificateBoundAccessTokens bool `yaml:"tls_client_certificate_bound_access_tokens" json:"tls_client_certificate_bound_access_tokens,omitempty"`
}

// User is a local account.
type User struct {
	Username string `yaml:"username"`
	// Password is a clear-text password, hashed with argon2id at load; prefer PasswordHash.
	Password     Secret   `yaml:"password"`
	PasswordHash string   `yaml:"password_hash"`
	FHIRUser     string   `yaml:"fhir_user"`
	Roles        []string `yaml:"roles"`
}

// Secret is a string that never prints its value.
type Secret string

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// Default returns the configuration fhirgate runs with when nothing is set.
func Default() Config {
	return Config{
		BaseURL:       "http://localhost:8080",
		Addr:          "127.0.0.1:8080",
		AdminAddr:     "127.0.0.1:8081",
		AdminTokenEnv: "FHIRGATE_ADMIN_TOKEN",
		DataDir:       "./fhirgate-data",
		DemoPatients:  100,
		Storage: Storage{
			Driver:          "sqlite",
			MaxOpenConns:    20,
			MaxIdleConns:    10,
			ConnMaxLifetime: 30 * time.Minute,
		},
		Log:      Log{Level: "info", Format: "text"},
		FHIR:     FHIR{DefaultCount: 50, MaxCount: 1000, PageTokenKeyEnv: "FHIRGATE_PAGE_TOKEN_KEY"},
		Auth:     DefaultAuth(),
		Gateway:  DefaultGateway(),
		Audit:    DefaultAudit(),
		Policy:   DefaultPolicy(),
		Redis:    DefaultRedis(),
		Upstream: DefaultUpstream(),
	}
}

// Parse decodes YAML over cfg, rejecting unknown keys.
func Parse(r io.Reader, cfg *Config) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// LoadFile reads a YAML config file over cfg.
func LoadFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if err := Parse(f, cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// FHIRBase is the FHIR base URL, {base_url}/fhir.
func (c *Config) FHIRBase() string { return strings.TrimRight(c.BaseURL, "/") + "/fhir" }

// Issuer is the OAuth issuer, base_url without a trailing slash.
func (c *Config) Issuer() string { return strings.TrimRight(c.BaseURL, "/") }

// Validate reports every problem of the configuration at once, each naming its key.
func (c *Config) Validate() error {
	var v Problems
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.Add("base_url", "must be an absolute http(s) URL, got %q", c.BaseURL)
	} else if u.RawQuery != "" || u.Fragment != "" {
		v.Add("base_url", "must not have a query or fragment")
	}
	checkAddr(&v, "addr", c.Addr, false)
	checkAddr(&v, "admin_addr", c.AdminAddr, true)
	if c.AdminTokenEnv == "" {
		v.Add("admin_token_env", "must name an environment variable")
	}
	switch c.Storage.Driver {
	case "sqlite":
		if c.DataDir == "" && c.Storage.DSN == "" {
			v.Add("data_dir", "must be set for the sqlite driver")
		}
	case "postgres":
		if c.Storage.DSN == "" {
			v.Add("storage.dsn", "must be set for the postgres driver")
		}
	default:
		v.Add("storage.driver", "must be sqlite or postgres, got %q", c.Storage.Driver)
	}
	if c.Storage.MaxOpenConns < 1 {
		v.Add("storage.max_open_conns", "must be at least 1")
	}
	if c.Storage.MaxIdleConns < 0 {
		v.Add("storage.max_idle_conns", "must not be negative")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.Add("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		v.Add("log.format", "must be json or text, got %q", c.Log.Format)
	}
	if c.FHIR.DefaultCount < 1 {
		v.Add("fhir.default_count", "must be at least 1")
	}
	if c.FHIR.MaxCount < c.FHIR.DefaultCount {
		v.Add("fhir.max_count", "must be at least fhir.default_count (%d)", c.FHIR.DefaultCount)
	}
	if c.Demo && c.DemoPatients < 1 {
		v.Add("demo_patients", "must be at least 1 with demo")
	}
	c.validateClients(&v)
	c.validateUsers(&v)
	c.Auth.validate(&v)
	c.Gateway.validate(&v)
	c.Audit.validate(&v)
	c.Policy.validate(&v)
	c.Redis.validate(&v)
	c.validateUpstream(&v)
	c.validateTenants(&v)
	return v.Err()
}

func (c *Config) validateClients(v *Problems) {
	seen := map[string]bool{}
	for i, cl := range c.Clients {
		key := fmt.Sprintf("clients[%d]", i)
		if cl.ClientID == "" {
			v.Add(key+".client_id", "must be set")
		} else if seen[cl.ClientID] {
			v.Add(key+".client_id", "duplicate client_id %q", cl.ClientID)
		}
		seen[cl.ClientID] = true
		switch cl.TokenEndpointAuthMethod {
		case "", "none":
			if cl.ClientSecret != "" {
				v.Add(key+".client_secret", "a public client (token_endpoint_auth_method none) has no secret")
			}
		case "client_secret_basic", "client_secret_post":
			if len(cl.ClientSecret) < 16 {
				v.Add(key+".client_secret", "must be at least 16 characters for %s", cl.TokenEndpointAuthMethod)
			}
		case "private_key_jwt":
			if (cl.JWKS == nil) == (cl.JWKSURI == "") {
				v.Add(key+".jwks", "private_key_jwt needs exactly one of jwks and jwks_uri")
			}
		case "tls_client_auth":
			if cl.ClientSecret != "" {
				v.Add(key+".client_secret", "a tls_client_auth client has no secret")
			}
			if (cl.TLSClientAuthSubjectDN == "") == (cl.TLSClientAuthSANDNS == "") {
				v.Add(key+".tls_client_auth_subject_dn", "tls_client_auth needs exactly one of tls_client_auth_subject_dn and tls_client_auth_san_dns")
			}
		default:
			v.Add(key+".token_endpoint_auth_method", "must be none, client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth, got %q", cl.TokenEndpointAuthMethod)
		}
		for j, ru := range cl.RedirectURIs {
			u, err := url.Parse(ru)
			if err != nil || !u.IsAbs() || u.Fragment != "" {
				v.Add(fmt.Sprintf("%s.redirect_uris[%d]", key, j), "must be an absolute URI without fragment, got %q", ru)
			}
		}
		for j, g := range cl.GrantTypes {
			switch g {
			case "authorization_code", "refresh_token", "client_credentials":
			case "urn:ietf:params:oauth:grant-type:token-exchange": // break-glass by token exchange (RFC 8693)
			default:
				v.Add(fmt.Sprintf("%s.grant_types[%d]", key, j), "unsupported grant type %q", g)
			}
		}
	}
}

func (c *Config) validateUsers(v *Problems) {
	seen := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.Username == "" {
			v.Add(key+".username", "must be set")
		} else if seen[u.Username] {
			v.Add(key+".username", "duplicate username %q", u.Username)
		}
		seen[u.Username] = true
		if (u.Password == "") == (u.PasswordHash == "") {
			v.Add(key+".password", "needs exactly one of password and password_hash")
		}
		if u.FHIRUser != "" {
			if typ, id, ok := strings.Cut(u.FHIRUser, "/"); !ok || id == "" || strings.Contains(id, "/") {
				v.Add(key+".fhir_user", "must be ResourceType/id, got %q", u.FHIRUser)
			} else {
				switch typ {
				case "Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Person":
				default:
					v.Add(key+".fhir_user", "must reference a Patient, Practitioner, PractitionerRole, RelatedPerson or Person, got %q", typ)
				}
			}
		}
	}
}

func checkAddr(v *Problems, key, addr string, optional bool) {
	if addr == "" {
		if !optional {
			v.Add(key, "must be set")
		}
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.Add(key, "must be host:port, got %q", addr)
	}
}

// Problems collects validation failures, each naming the config key at fault.
type Problems struct{ list []string }

// Add records a problem with key.
func (p *Problems) Add(key, format string, args ...any) {
	p.list = append(p.list, key+": "+fmt.Sprintf(format, args...))
}

// Err returns every recorded problem as one error, or nil.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}

// ValidationError lists every problem of a configuration.
type ValidationError struct{ Problems []string }

func (e *ValidationError) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// ErrInvalid is matched by errors.Is for any ValidationError.
var ErrInvalid = errors.New("invalid configuration")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }
