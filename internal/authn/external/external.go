package external

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authn/rolesec"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// The verification modes.
const (
	ModeJWKS          = "jwks"
	ModeIntrospection = "introspection"
)

// Claims says where an issuer puts what fhirgate needs. A name may be a dotted path into
// nested objects (realm_access.roles). Empty fields take the SMART names.
type Claims struct {
	Patient  string // default "patient"
	FHIRUser string // default "fhirUser"
	// Scope is a space-separated string or an array of strings (Entra's scp, Okta's scp).
	Scope string // default "scope"
	Roles string // default "roles"
	// Client is the OAuth client (client_id, azp, cid, appid).
	Client string // default "client_id", then "azp"
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the external issuer; OIDC discovery is at {Issuer}/.well-known/openid-configuration
	// and its "issuer" must equal it exactly.
	Issuer string
	// Audience is what the token's aud must contain (usually the tenant's FHIR base); for
	// introspection it is checked when the answer has an aud.
	Audience string
	// Mode is jwks or introspection.
	Mode string
	// ClientID and ClientSecret authenticate fhirgate at the introspection endpoint
	// (client_secret_basic).
	ClientID, ClientSecret string
	// CacheMax bounds how long an introspection answer is reused (never past the token's exp);
	// 0 means 60 s.
	CacheMax time.Duration
	// Claims is the claim mapping.
	Claims Claims
	// Roles, when not nil, are the deployment's roles (policy.roles): the mapped roles of a token
	// that name one of them give it their clearance and default purposes of use, merged as
	// fhirgate's authorization server merges them (rolesec). Nil leaves external tokens without
	// either (the FHIR API's default clearance). The token's own clearance, purpose_of_use and
	// break_glass claims are never read: the issuer's tokens are never emergency-access tokens.
	Roles map[string]config.Role
	// Algorithms allowed for JWTs; nil means ES256, ES384, RS256, RS384, PS256.
	Algorithms []jose.SignatureAlgorithm
	// KeyMinRefresh is the least time between two JWKS fetches caused by an unknown kid;
	// 0 means 10 s.
	KeyMinRefresh time.Duration
	// HTTPClient fetches discovery, keys and introspection answers; one with a 10 s timeout
	// when nil.
	HTTPClient *http.Client
	// Now is the clock.
	Now func() time.Time
}

// Discovery is the part of the issuer's OIDC / RFC 8414 metadata fhirgate uses (and publishes
// in the tenant's smart-configuration).
type Discovery struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	IntrospectionEndpoint string   `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint    string   `json:"revocation_endpoint,omitempty"`
	RegistrationEndpoint  string   `json:"registration_endpoint,omitempty"`
	ScopesSupported       []string `json:"scopes_supported,omitempty"`
}

// Verifier verifies the external issuer's tokens; it implements the FHIR API's Authenticator.
type Verifier struct {
	cfg  Config
	disc Discovery
	hc   *http.Client
	algs []jose.SignatureAlgorithm

	mu        sync.Mutex
	keys      jose.JSONWebKeySet
	fetchedAt time.Time
	cache     map[[32]byte]cached
}

type cached struct {
	p       *authn.Principal
	expires time.Time
}

// maxCache bounds the introspection cache; when full it is emptied.
const maxCache = 10000

// New fetches the issuer's discovery document (and, in mode jwks, its keys) and returns the
// Verifier. An issuer that cannot be reached fails here, at start.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("external: issuer and audience are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheMax <= 0 {
		cfg.CacheMax = time.Minute
	}
	if cfg.KeyMinRefresh <= 0 {
		cfg.KeyMinRefresh = 10 * time.Second
	}
	v := &Verifier{cfg: cfg, hc: cfg.HTTPClient, algs: cfg.Algorithms, cache: map[[32]byte]cached{}}
	if v.algs == nil {
		v.algs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.RS384, jose.PS256}
	}
	for _, a := range v.algs {
		if strings.HasPrefix(string(a), "HS") || a == "none" {
			return nil, fmt.Errorf("external: algorithm %q may not sign access tokens", a)
		}
	}
	if err := v.discover(ctx); err != nil {
		return nil, err
	}
	switch cfg.Mode {
	case ModeJWKS:
		if _, err := v.refreshKeys(ctx); err != nil {
			return nil, err
		}
	case ModeIntrospection:
		if v.disc.IntrospectionEndpoint == "" {
			return nil, fmt.Errorf("external: %s publishes no introspection_endpoint", cfg.Issuer)
		}
		if cfg.ClientID == "" || cfg.ClientSecret == "" {
			return nil, errors.New("external: introspection needs a client id and secret")
		}
	default:
		return nil, fmt.Errorf("external: unknown mode %q", cfg.Mode)
	}
	return v, nil
}

// Discovery is the issuer's metadata as fetched at start.
func (v *Verifier) Discovery() Discovery { return v.disc }

func (v *Verifier) getJSON(ctx context.Context, u string, out any) error {
	if err := checkURL(u); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return fmt.Errorf("external: %q is not an http(s) URL", u)
	}
	return nil
}

func (v *Verifier) discover(ctx context.Context) error {
	u := strings.TrimRight(v.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	if err := v.getJSON(ctx, u, &v.disc); err != nil {
		return fmt.Errorf("external: discovery of %s: %w", v.cfg.Issuer, err)
	}
	// OIDC Discovery section 4.3: the issuer in the document must be the one asked for.
	if v.disc.Issuer != v.cfg.Issuer {
		return fmt.Errorf("external: discovery of %s names the issuer %q", v.cfg.Issuer, v.disc.Issuer)
	}
	if v.cfg.Mode == ModeJWKS && v.disc.JWKSURI == "" {
		return fmt.Errorf("external: %s publishes no jwks_uri", v.cfg.Issuer)
	}
	return nil
}

// refreshKeys fetches the JWKS unless it was fetched less than KeyMinRefresh ago; it reports
// whether it fetched.
func (v *Verifier) refreshKeys(ctx context.Context) (bool, error) {
	v.mu.Lock()
	recent := !v.fetchedAt.IsZero() && v.cfg.Now().Sub(v.fetchedAt) < v.cfg.KeyMinRefresh
	v.mu.Unlock()
	if recent {
		return false, nil
	}
	var set jose.JSONWebKeySet
	if err := v.getJSON(ctx, v.disc.JWKSURI, &set); err != nil {
		return false, fmt.Errorf("external: keys of %s: %w", v.cfg.Issuer, err)
	}
	v.mu.Lock()
	v.keys, v.fetchedAt = set, v.cfg.Now()
	v.mu.Unlock()
	return true, nil
}

func (v *Verifier) key(kid string) (any, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, k := range v.keys.Key(kid) {
		if k.IsPublic() && k.Use != "enc" {
			return k.Key, true
		}
	}
	return nil, false
}

// Authenticate implements the FHIR API's Authenticator.
func (v *Verifier) Authenticate(ctx context.Context, authorization string) (*authn.Principal, error) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, authn.ErrNoToken
	}
	token = strings.TrimSpace(token)
	if len(token) > 16<<10 {
		return nil, invalid("the access token is too large", nil)
	}
	if v.cfg.Mode == ModeIntrospection {
		return v.introspect(ctx, token)
	}
	return v.verifyJWT(ctx, token)
}

func invalid(desc string, cause error) *authn.Error {
	return &authn.Error{Code: authn.CodeInvalidToken, Description: desc, Status: http.StatusUnauthorized, Cause: cause}
}

func unavailable(desc string, cause error) *authn.Error {
	return &authn.Error{Description: desc, Status: http.StatusServiceUnavailable, Cause: cause}
}

const skew = 30 * time.Second

func (v *Verifier) verifyJWT(ctx context.Context, token string) (*authn.Principal, error) {
	tok, err := jwt.ParseSigned(token, v.algs)
	if err != nil || len(tok.Headers) != 1 {
		return nil, invalid("the access token is not a signed JWT with an allowed algorithm", err)
	}
	kid := tok.Headers[0].KeyID
	key, ok := v.key(kid)
	if !ok {
		// An unknown kid: the issuer may have rotated its keys. Fetch them again (at most once
		// per KeyMinRefresh, so that made-up kids cannot make fhirgate hammer the issuer).
		_, err := v.refreshKeys(ctx)
		if err != nil {
			return nil, unavailable("the token issuer's keys cannot be fetched", err)
		}
		if key, ok = v.key(kid); !ok {
			return nil, invalid("the access token is signed with an unknown key", nil)
		}
	}
	var std jwt.Claims
	raw := map[string]any{}
	if err := tok.Claims(key, &std, &raw); err != nil {
		return nil, invalid("the access token's signature is not valid", err)
	}
	now := v.cfg.Now()
	if std.Issuer != v.cfg.Issuer {
		return nil, invalid("the access token is not from the trusted issuer", nil)
	}
	if !slices.Contains([]string(std.Audience), v.cfg.Audience) {
		return nil, invalid("the access token is not meant for this FHIR server", nil)
	}
	if std.Expiry == nil || !now.Before(std.Expiry.Time().Add(skew)) {
		return nil, invalid("the access token has expired or has no expiry", nil)
	}
	if std.NotBefore != nil && now.Add(skew).Before(std.NotBefore.Time()) {
		return nil, invalid("the access token is not valid yet", nil)
	}
	return v.principal(raw, std.Subject, std.ID, std.Expiry.Time(), std.IssuedAt)
}

// principal maps the claims; fields missing from the token grant nothing.
func (v *Verifier) principal(raw map[string]any, sub, jti string, exp time.Time, iat *jwt.NumericDate) (*authn.Principal, error) {
	m := v.cfg.Claims
	p := &authn.Principal{Issuer: v.cfg.Issuer, Subject: sub, JTI: jti, Expiry: exp}
	if iat != nil {
		p.IssuedAt = iat.Time()
	}
	p.Patient = str(claim(raw, or(m.Patient, "patient")))
	if p.Patient != "" && !smart.ValidID(p.Patient) {
		return nil, invalid("the access token's patient is not a FHIR id", nil)
	}
	if fu := str(claim(raw, or(m.FHIRUser, "fhirUser"))); fu != "" {
		fu = strings.TrimPrefix(fu, v.cfg.Audience+"/")
		if _, _, ok := smart.SplitReference(fu); !ok {
			return nil, invalid("the access token's fhirUser is not a reference to a resource on this server", nil)
		}
		p.FHIRUser = fu
	}
	p.Scopes, p.DroppedScopes = smart.ParseScopes(strings.Join(strs(claim(raw, or(m.Scope, "scope"))), " "))
	p.Roles = strs(claim(raw, or(m.Roles, "roles")))
	if m.Client != "" {
		p.ClientID = str(claim(raw, m.Client))
	} else if p.ClientID = str(claim(raw, "client_id")); p.ClientID == "" {
		p.ClientID = str(claim(raw, "azp"))
	}
	if p.Subject == "" {
		p.Subject = p.ClientID
	}
	if p.Subject == "" || p.ClientID == "" {
		return nil, invalid("the access token has no subject or client", nil)
	}
	if v.cfg.Roles != nil {
		p.Clearance = rolesec.Clearance(v.cfg.Roles, p.Roles)
		// Emergency access is granted by fhirgate's own authorization server only, with its
		// review item; a role never gives BTG (config validation refuses it), and should one
		// slip through it is dropped here rather than trusted.
		p.PurposeOfUse = slices.DeleteFunc(rolesec.Purposes(v.cfg.Roles, p.Roles), func(s string) bool { return s == authn.PurposeBreakGlass })
	}
	return p, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// claim follows a dotted path into nested objects.
func claim(raw map[string]any, path string) any {
	var cur any = raw
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// strs reads a space-separated string or an array of strings.
func strs(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// introspect asks the issuer about an opaque token (RFC 7662), reusing an answer for the token's
// life or CacheMax, whichever is shorter. Only active answers are cached.
func (v *Verifier) introspect(ctx context.Context, token string) (*authn.Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := v.cfg.Now()
	v.mu.Lock()
	c, ok := v.cache[key]
	v.mu.Unlock()
	if ok && now.Before(c.expires) {
		cp := *c.p
		return &cp, nil
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.disc.IntrospectionEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable("the token issuer cannot be asked", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: the client id and secret are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(v.cfg.ClientID), url.QueryEscape(v.cfg.ClientSecret))
	resp, err := v.hc.Do(req)
	if err != nil {
		return nil, unavailable("the token issuer cannot be reached", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, unavailable("the token issuer refused the introspection", fmt.Errorf("status %d", resp.StatusCode))
	}
	raw := map[string]any{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&raw); err != nil {
		return nil, unavailable("the token issuer's introspection answer is not JSON", err)
	}
	if active, _ := raw["active"].(bool); !active {
		return nil, invalid("the access token is not active", nil)
	}
	if iss := str(raw["iss"]); iss != "" && iss != v.cfg.Issuer {
		return nil, invalid("the access token is not from the trusted issuer", nil)
	}
	if aud, ok := raw["aud"]; ok {
		if !slices.Contains(strs(aud), v.cfg.Audience) {
			return nil, invalid("the access token is not meant for this FHIR server", nil)
		}
	}
	expF, _ := raw["exp"].(float64)
	if expF == 0 {
		return nil, invalid("the introspection answer has no expiry", nil)
	}
	exp := time.Unix(int64(expF), 0)
	if !now.Before(exp) {
		return nil, invalid("the access token has expired", nil)
	}
	var iat *jwt.NumericDate
	if f, ok := raw["iat"].(float64); ok {
		iat = jwt.NewNumericDate(time.Unix(int64(f), 0))
	}
	p, err := v.principal(raw, str(raw["sub"]), str(raw["jti"]), exp, iat)
	if err != nil {
		return nil, err
	}
	until := now.Add(v.cfg.CacheMax)
	if exp.Before(until) {
		until = exp
	}
	v.mu.Lock()
	if len(v.cache) >= maxCache {
		clear(v.cache)
	}
	keep := *p
	v.cache[key] = cached{p: &keep, expires: until}
	v.mu.Unlock()
	return p, nil
}
