package authserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// Errors of the client and user registries.
var (
	ErrNotFound        = errors.New("authserver: not found")
	ErrInvalidMetadata = errors.New("authserver: invalid client metadata")
)

// ClientMetadata is an OAuth client registration in RFC 7591 form, the shape the config file,
// the admin API and dynamic registration all use. The secret is never part of it.
type ClientMetadata struct {
	ClientID                string          `json:"client_id"`
	ClientName              string          `json:"client_name,omitempty"`
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	GrantTypes              []string        `json:"grant_types,omitempty"`
	ResponseTypes           []string        `json:"response_types,omitempty"`
	Scope                   string          `json:"scope,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                 string          `json:"jwks_uri,omitempty"`
	// LaunchURL is the app's SMART launch URL, used by the EHR launcher.
	LaunchURL        string `json:"launch_url,omitempty"`
	ClientIDIssuedAt int64  `json:"client_id_issued_at,omitempty"`
	// RFC 8705 section 2.1.2: the certificate a tls_client_auth client authenticates with is
	// identified by exactly one of its subject DN and a DNS subjectAltName.
	TLSClientAuthSubjectDN string `json:"tls_client_auth_subject_dn,omitempty"`
	TLSClientAuthSANDNS    string `json:"tls_client_auth_san_dns,omitempty"`
	// CertificateBoundAccessTokens (RFC 8705 section 3.4) binds the client's tokens to the
	// certificate it presents at the token endpoint; the token endpoint then requires one.
	CertificateBoundAccessTokens bool `json:"tls_client_certificate_bound_access_tokens,omitempty"`
}

// Client is a registered client as fosite sees it.
type Client struct {
	Metadata ClientMetadata
	// source is config, admin or dynamic; dynamically registered clients' JWKS URLs are fetched
	// only from public addresses.
	source     string
	secretHash []byte
	jwks       *josev3.JSONWebKeySet // the inline key set, parsed
	scopes     smart.Scopes
	audience   string
}

var (
	_ fosite.Client              = (*Client)(nil)
	_ fosite.OpenIDConnectClient = (*Client)(nil)
)

func (c *Client) GetID() string                   { return c.Metadata.ClientID }
func (c *Client) GetHashedSecret() []byte         { return c.secretHash }
func (c *Client) GetRedirectURIs() []string       { return c.Metadata.RedirectURIs }
func (c *Client) GetGrantTypes() fosite.Arguments { return fosite.Arguments(c.Metadata.GrantTypes) }
func (c *Client) GetResponseTypes() fosite.Arguments {
	if slices.Contains(c.Metadata.GrantTypes, oauth.GrantAuthorizationCode) {
		return fosite.Arguments{oauth.ResponseTypeCode}
	}
	return nil
}
func (c *Client) GetScopes() fosite.Arguments {
	return fosite.Arguments(strings.Fields(c.Metadata.Scope))
}
func (c *Client) IsPublic() bool                        { return c.Metadata.TokenEndpointAuthMethod == oauth.AuthNone }
func (c *Client) GetAudience() fosite.Arguments         { return fosite.Arguments{c.audience} }
func (c *Client) GetRequestURIs() []string              { return nil }
func (c *Client) GetJSONWebKeys() *josev3.JSONWebKeySet { return c.jwks }
func (c *Client) GetJSONWebKeysURI() string             { return c.Metadata.JWKSURI }
func (c *Client) GetRequestObjectSigningAlgorithm() string {
	return "" // request objects are refused at the authorization endpoint
}
func (c *Client) GetTokenEndpointAuthMethod() string { return c.Metadata.TokenEndpointAuthMethod }
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string {
	return "" // fhirgate's own client authentication accepts RS384 and ES384
}

// Scopes is the parsed registered scope: the most the client may be granted.
func (c *Client) Scopes() smart.Scopes { return c.scopes }

// checkSecret compares the SHA-256 of secret with the stored digest in constant time.
func (c *Client) checkSecret(secret string) bool {
	if len(c.secretHash) == 0 || secret == "" {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], c.secretHash) == 1
}

// Clients is the client registry over the store.
type Clients struct {
	db       *sqlstore.Store
	now      func() time.Time
	audience string
}

// NewClients returns the registry; audience is the FHIR base URL every client's tokens are for.
func NewClients(db *sqlstore.Store, audience string, now func() time.Time) *Clients {
	if now == nil {
		now = time.Now
	}
	return &Clients{db: db, now: now, audience: audience}
}

// HashSecret is the stored form of a client secret.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// NewSecret returns a random client secret (256 bits, base64url).
func NewSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Put validates and stores a client. secret is required for the client_secret_* methods and
// refused otherwise. source is config, admin or dynamic.
func (cs *Clients) Put(ctx context.Context, m ClientMetadata, secret, source string) error {
	m = normalizeMetadata(m)
	if err := ValidateMetadata(m, secret); err != nil {
		return err
	}
	if m.ClientIDIssuedAt == 0 {
		m.ClientIDIssuedAt = cs.now().Unix()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var hash []byte
	if secret != "" {
		hash = HashSecret(secret)
	}
	return cs.db.PutOAuthClient(ctx, sqlstore.OAuthClient{ClientID: m.ClientID, Metadata: data, SecretHash: hash, Source: source, CreatedAt: cs.now()})
}

// Get returns a client or an error wrapping ErrNotFound.
func (cs *Clients) Get(ctx context.Context, id string) (*Client, error) {
	rec, err := cs.db.GetOAuthClient(ctx, id)
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		return nil, fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var m ClientMetadata
	if err := json.Unmarshal(rec.Metadata, &m); err != nil {
		return nil, fmt.Errorf("authserver: stored client %q: %w", id, err)
	}
	c := &Client{Metadata: m, source: rec.Source, secretHash: rec.SecretHash, audience: cs.audience}
	c.scopes, _ = smart.ParseScopes(m.Scope)
	if len(m.JWKS) > 0 {
		var set josev3.JSONWebKeySet
		if err := json.Unmarshal(m.JWKS, &set); err != nil {
			return nil, fmt.Errorf("authserver: stored client %q jwks: %w", id, err)
		}
		c.jwks = &set
	}
	return c, nil
}

// List returns every client's metadata.
func (cs *Clients) List(ctx context.Context) ([]ClientMetadata, error) {
	recs, err := cs.db.ListOAuthClients(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ClientMetadata, 0, len(recs))
	for _, r := range recs {
		var m ClientMetadata
		if err := json.Unmarshal(r.Metadata, &m); err != nil {
			return nil, fmt.Errorf("authserver: stored client %q: %w", r.ClientID, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Delete removes a client and revokes everything issued to it.
func (cs *Clients) Delete(ctx context.Context, id string) error {
	err := cs.db.DeleteOAuthClient(ctx, id)
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		return fmt.Errorf("client %q: %w", id, ErrNotFound)
	}
	return err
}

// MetadataFromConfig converts a config client.
func MetadataFromConfig(c config.Client) (ClientMetadata, string, error) {
	m := ClientMetadata{
		ClientID: c.ClientID, ClientName: c.ClientName, RedirectURIs: c.RedirectURIs,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, GrantTypes: c.GrantTypes, Scope: c.Scope,
		JWKSURI: c.JWKSURI, LaunchURL: c.LaunchURL,
		TLSClientAuthSubjectDN: c.TLSClientAuthSubjectDN, TLSClientAuthSANDNS: c.TLSClientAuthSANDNS,
		CertificateBoundAccessTokens: c.CertificateBoundAccessTokens,
	}
	if c.JWKS != nil {
		data, err := json.Marshal(normalizeYAML(c.JWKS))
		if err != nil {
			return m, "", fmt.Errorf("%w: client %q jwks: %w", ErrInvalidMetadata, c.ClientID, err)
		}
		m.JWKS = data
	}
	return m, c.ClientSecret.Value(), nil
}

// normalizeYAML turns map[any]any (older YAML decoders) into map[string]any for JSON.
func normalizeYAML(v any) any {
	switch t := v.(type) {
	case map[any]any:
		m := map[string]any{}
		for k, v := range t {
			m[fmt.Sprint(k)] = normalizeYAML(v)
		}
		return m
	case map[string]any:
		for k, v := range t {
			t[k] = normalizeYAML(v)
		}
		return t
	case []any:
		for i := range t {
			t[i] = normalizeYAML(t[i])
		}
		return t
	}
	return v
}

func normalizeMetadata(m ClientMetadata) ClientMetadata {
	if m.TokenEndpointAuthMethod == "" {
		// RFC 7591 2: the default is client_secret_basic; fhirgate requires the method to be
		// explicit only when a secret or keys are given, and otherwise takes the public default.
		if len(m.JWKS) > 0 || m.JWKSURI != "" {
			m.TokenEndpointAuthMethod = oauth.AuthPrivateKeyJWT
		} else {
			m.TokenEndpointAuthMethod = oauth.AuthNone
		}
	}
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{oauth.GrantAuthorizationCode}
	}
	if slices.Contains(m.GrantTypes, oauth.GrantAuthorizationCode) {
		m.ResponseTypes = []string{oauth.ResponseTypeCode}
	} else {
		m.ResponseTypes = nil
	}
	return m
}

func metaErr(code, format string, args ...any) error {
	return &oauth.Error{Code: code, Description: fmt.Sprintf(format, args...), Cause: ErrInvalidMetadata}
}

// ValidateMetadata checks a registration; errors are *oauth.Error with the RFC 7591 codes
// (invalid_client_metadata, invalid_redirect_uri) wrapping ErrInvalidMetadata.
func ValidateMetadata(m ClientMetadata, secret string) error {
	if m.ClientID == "" || len(m.ClientID) > 128 || strings.ContainsAny(m.ClientID, " \t\r\n:") {
		return metaErr(oauth.InvalidClientMetadata, "client_id must be 1-128 characters without spaces or ':'")
	}
	switch m.TokenEndpointAuthMethod {
	case oauth.AuthNone:
		if secret != "" {
			return metaErr(oauth.InvalidClientMetadata, "a public client (none) has no secret")
		}
	case oauth.AuthClientSecretBasic, oauth.AuthClientSecretPost:
		if len(secret) < 16 {
			return metaErr(oauth.InvalidClientMetadata, "client secret must be at least 16 characters")
		}
	case oauth.AuthPrivateKeyJWT:
		if secret != "" {
			return metaErr(oauth.InvalidClientMetadata, "private_key_jwt clients have no secret")
		}
		if (len(m.JWKS) > 0) == (m.JWKSURI != "") {
			return metaErr(oauth.InvalidClientMetadata, "private_key_jwt needs exactly one of jwks and jwks_uri")
		}
		if len(m.JWKS) > 0 {
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(m.JWKS, &set); err != nil {
				return metaErr(oauth.InvalidClientMetadata, "jwks: %v", err)
			}
			if len(set.Keys) == 0 {
				return metaErr(oauth.InvalidClientMetadata, "jwks has no keys")
			}
			for _, k := range set.Keys {
				if k.KeyID == "" || !k.IsPublic() {
					return metaErr(oauth.InvalidClientMetadata, "every jwks key must be a public key with a kid")
				}
			}
		}
		if m.JWKSURI != "" {
			if err := checkFetchURL(m.JWKSURI); err != nil {
				return metaErr(oauth.InvalidClientMetadata, "jwks_uri: %v", err)
			}
		}
	case oauth.AuthTLSClient:
		if secret != "" {
			return metaErr(oauth.InvalidClientMetadata, "tls_client_auth clients have no secret")
		}
		if (m.TLSClientAuthSubjectDN == "") == (m.TLSClientAuthSANDNS == "") {
			return metaErr(oauth.InvalidClientMetadata, "tls_client_auth needs exactly one of tls_client_auth_subject_dn and tls_client_auth_san_dns")
		}
	default:
		return metaErr(oauth.InvalidClientMetadata, "token_endpoint_auth_method must be none, client_secret_basic, client_secret_post, private_key_jwt or tls_client_auth")
	}
	if m.TokenEndpointAuthMethod != oauth.AuthTLSClient && (m.TLSClientAuthSubjectDN != "" || m.TLSClientAuthSANDNS != "") {
		return metaErr(oauth.InvalidClientMetadata, "tls_client_auth_subject_dn and tls_client_auth_san_dns belong to tls_client_auth clients")
	}
	for _, g := range m.GrantTypes {
		switch g {
		case oauth.GrantAuthorizationCode, oauth.GrantRefreshToken:
		case oauth.GrantClientCredentials:
			if m.TokenEndpointAuthMethod == oauth.AuthNone {
				return metaErr(oauth.InvalidClientMetadata, "client_credentials needs a confidential client")
			}
		case oauth.GrantTokenExchange:
			// Break-glass by token exchange (exchange.go); the client opts in explicitly.
		default:
			return metaErr(oauth.InvalidClientMetadata, "unsupported grant type %q", g)
		}
	}
	if slices.Contains(m.GrantTypes, oauth.GrantAuthorizationCode) && len(m.RedirectURIs) == 0 {
		return metaErr(oauth.InvalidRedirectURI, "authorization_code needs at least one redirect_uri")
	}
	for _, ru := range m.RedirectURIs {
		u, err := url.Parse(ru)
		if err != nil || !u.IsAbs() || u.Fragment != "" || u.Host == "" && (u.Scheme == "http" || u.Scheme == "https") {
			return metaErr(oauth.InvalidRedirectURI, "redirect_uri %q must be absolute without fragment", ru)
		}
		// Schemes a browser would execute or read locally are never redirect targets.
		if slices.Contains(forbiddenRedirectSchemes, strings.ToLower(u.Scheme)) {
			return metaErr(oauth.InvalidRedirectURI, "redirect_uri %q uses a forbidden scheme", ru)
		}
	}
	if m.LaunchURL != "" {
		if u, err := url.Parse(m.LaunchURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return metaErr(oauth.InvalidClientMetadata, "launch_url must be an absolute http(s) URL")
		}
	}
	_, dropped := smart.ParseScopes(m.Scope)
	if len(dropped) > 0 {
		return metaErr(oauth.InvalidClientMetadata, "scope has values fhirgate does not understand: %q", dropped)
	}
	return nil
}

// forbiddenRedirectSchemes are never accepted as redirect URIs.
var forbiddenRedirectSchemes = []string{"javascript", "data", "vbscript", "file", "about", "blob", "filesystem"}

// ValidateDynamicMetadata adds the rules for RFC 7591 dynamic registration on top of
// ValidateMetadata: a self-registered client cannot pre-authorize itself for Backend Services
// (client_credentials or system/ scopes would give it every patient's data with no user
// involved), its redirect URIs must be https, loopback http or a private-use scheme, and its
// jwks_uri must point to a public address (no SSRF into the server's network).
func ValidateDynamicMetadata(m ClientMetadata) error {
	if slices.Contains(m.GrantTypes, oauth.GrantClientCredentials) {
		return metaErr(oauth.InvalidClientMetadata, "client_credentials clients are registered by an administrator, not dynamically")
	}
	if slices.Contains(m.GrantTypes, oauth.GrantTokenExchange) {
		// Letting an app turn a bearer token into emergency access is an administrator's decision.
		return metaErr(oauth.InvalidClientMetadata, "token-exchange (break-glass) clients are registered by an administrator, not dynamically")
	}
	scopes, _ := smart.ParseScopes(m.Scope)
	for _, sc := range scopes {
		if sc.IsResource() && sc.Context == smart.ContextSystem {
			return metaErr(oauth.InvalidClientMetadata, "system/ scopes are granted by an administrator, not dynamically")
		}
	}
	for _, ru := range m.RedirectURIs {
		u, err := url.Parse(ru)
		if err != nil {
			return metaErr(oauth.InvalidRedirectURI, "redirect_uri %q is not a URL", ru)
		}
		if strings.EqualFold(u.Scheme, "http") && !isLoopbackHost(u.Hostname()) {
			return metaErr(oauth.InvalidRedirectURI, "redirect_uri %q must be https (http only for loopback)", ru)
		}
	}
	if m.JWKSURI != "" {
		u, err := url.Parse(m.JWKSURI)
		if err != nil || !strings.EqualFold(u.Scheme, "https") {
			return metaErr(oauth.InvalidClientMetadata, "jwks_uri must be https")
		}
		host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
		if host == "localhost" || strings.HasSuffix(host, ".localhost") || !strings.Contains(host, ".") && net.ParseIP(host) == nil {
			return metaErr(oauth.InvalidClientMetadata, "jwks_uri must name a public host")
		}
		if ip := net.ParseIP(host); ip != nil && !publicIP(ip) {
			return metaErr(oauth.InvalidClientMetadata, "jwks_uri must name a public address")
		}
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// publicIP reports whether ip is a globally routable unicast address: not loopback, private
// (RFC 1918, ULA), link-local (cloud metadata services), CGNAT, multicast or unspecified.
func publicIP(ip net.IP) bool {
	if ip4 := ip.To4(); ip4 != nil {
		ip = ip4
		// 100.64.0.0/10 (CGNAT) and 0.0.0.0/8 are not covered by the net helpers.
		if ip[0] == 0 || ip[0] == 100 && ip[1]&0xc0 == 64 {
			return false
		}
	}
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast()
}

// checkFetchURL accepts https URLs, and http only on loopback hosts (development and tests).
func checkFetchURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return errors.New("must be an absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must be https (http only for loopback)")
	}
	return errors.New("must be https")
}
