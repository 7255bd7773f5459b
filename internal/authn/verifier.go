package authn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/smart"
)

// Revoker tells whether an access token has been revoked (RFC 7009 revocation, logout, refresh
// token reuse revoking a family). The authorization server's token store implements it.
type Revoker interface {
	Revoked(ctx context.Context, jti string) (bool, error)
}

// Defaults of Config.
const (
	DefaultSkew          = 30 * time.Second
	DefaultKeyMaxAge     = 5 * time.Minute
	DefaultKeyMinRefresh = 30 * time.Second
	DefaultMaxTokenSize  = 16 << 10
)

// Config configures a Verifier. Issuer, Audience, Keys and Revoker are required.
type Config struct {
	// Issuer is the exact iss every token must carry ({base_url}).
	Issuer string
	// Audience is this FHIR base URL ({base_url}/fhir); aud must be exactly this one value.
	Audience string
	// Keys supplies the verification keys.
	Keys KeySource
	// Revoker answers revocation checks. A failure to answer fails the request (503).
	Revoker Revoker
	// Algorithms is the allow-list of signature algorithms; nil means ES256 only. Symmetric
	// (HS*) algorithms and "none" are refused.
	Algorithms []jose.SignatureAlgorithm
	// Skew is the clock skew tolerated on exp, nbf and iat; zero means DefaultSkew. Set a
	// negative value for no skew.
	Skew time.Duration
	// KeyMaxAge is how long fetched keys are used before they are fetched again; zero means
	// DefaultKeyMaxAge.
	KeyMaxAge time.Duration
	// KeyMinRefresh is the least time between two fetches caused by an unknown kid; zero means
	// DefaultKeyMinRefresh.
	KeyMinRefresh time.Duration
	// MaxTokenSize bounds the token length in bytes; zero means DefaultMaxTokenSize.
	MaxTokenSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies access tokens. It is safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	algs     []jose.SignatureAlgorithm
	skew     time.Duration
	maxSize  int
	now      func() time.Time
	revoker  Revoker
	keys     *keyCache
}

var allowedAlgs = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

// NewVerifier checks cfg and builds a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	var problems []string
	if cfg.Issuer == "" {
		problems = append(problems, "issuer is required")
	}
	if cfg.Audience == "" {
		problems = append(problems, "audience is required")
	}
	if cfg.Keys == nil {
		problems = append(problems, "a key source is required")
	}
	if cfg.Revoker == nil {
		problems = append(problems, "a revoker is required")
	}
	algs := cfg.Algorithms
	if algs == nil {
		algs = []jose.SignatureAlgorithm{jose.ES256}
	}
	if len(algs) == 0 {
		problems = append(problems, "the algorithm allow-list is empty")
	}
	for _, a := range algs {
		if !slices.Contains(allowedAlgs, a) {
			problems = append(problems, fmt.Sprintf("algorithm %q may not sign access tokens", a))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("authn: %s", strings.Join(problems, "; "))
	}
	v := &Verifier{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		algs:     slices.Clone(algs),
		skew:     cfg.Skew,
		maxSize:  cfg.MaxTokenSize,
		now:      cfg.Now,
		revoker:  cfg.Revoker,
	}
	switch {
	case v.skew == 0:
		v.skew = DefaultSkew
	case v.skew < 0:
		v.skew = 0
	}
	if v.maxSize <= 0 {
		v.maxSize = DefaultMaxTokenSize
	}
	if v.now == nil {
		v.now = time.Now
	}
	v.keys = &keyCache{source: cfg.Keys, now: v.now, maxAge: cfg.KeyMaxAge, minRefresh: cfg.KeyMinRefresh}
	if v.keys.maxAge <= 0 {
		v.keys.maxAge = DefaultKeyMaxAge
	}
	if v.keys.minRefresh <= 0 {
		v.keys.minRefresh = DefaultKeyMinRefresh
	}
	return v, nil
}

// Principal is who a verified access token speaks for, and what it grants.
type Principal struct {
	// Issuer and Subject are the token's iss and sub (for a backend service, sub is the client).
	Issuer  string
	Subject string
	// ClientID is the OAuth client the token was issued to.
	ClientID string
	// FHIRUser is the relative reference of the signed-in user's FHIR resource
	// (Practitioner/123), empty if none.
	FHIRUser string
	// Patient and Encounter are the launch context ids, empty if none.
	Patient   string
	Encounter string
	// FHIRContext is the further launch context.
	FHIRContext []smart.ContextItem
	// Scopes are the granted scopes, parsed. DroppedScopes are scope strings in the token that
	// fhirgate does not understand; they grant nothing.
	Scopes        smart.Scopes
	DroppedScopes []string
	// Roles are the user's roles as the authorization server recorded them.
	Roles []string
	// JTI identifies the token (revocation, audit, page-token binding).
	JTI string
	// SessionID is the sid claim: the login session the token belongs to.
	SessionID string
	// IssuedAt and Expiry are iat and exp.
	IssuedAt time.Time
	Expiry   time.Time
	// CertThumbprint is the cnf x5t#S256 of a certificate-bound token (RFC 8705 section 3):
	// the base64url SHA-256 of the client certificate the token was issued to. Empty for a
	// plain bearer token. CheckBinding compares it with the connection's certificate.
	CertThumbprint string
	// Clearance is the clearance claim (the security labels the holder may see); nil when the
	// token carries none (the policy then applies its default clearance).
	Clearance *Clearance
	// PurposeOfUse are the purpose_of_use claim's v3 ActReason codes (TREAT, ETREAT, BTG, ...).
	PurposeOfUse []string
	// BreakGlass is set on an emergency-access token (with PurposeOfUse BTG).
	BreakGlass *BreakGlass
}

// FHIRUserRef splits FHIRUser into type and id.
func (p *Principal) FHIRUserRef() (typ, id string, ok bool) { return smart.SplitReference(p.FHIRUser) }

// claims is the access-token claims contract with the authorization server.
type claims struct {
	Issuer      string              `json:"iss"`
	Subject     string              `json:"sub"`
	Audience    jwt.Audience        `json:"aud"`
	Expiry      *jwt.NumericDate    `json:"exp"`
	NotBefore   *jwt.NumericDate    `json:"nbf"`
	IssuedAt    *jwt.NumericDate    `json:"iat"`
	ID          string              `json:"jti"`
	ClientID    string              `json:"client_id"`
	Scope       string              `json:"scope"`
	Patient     string              `json:"patient"`
	Encounter   string              `json:"encounter"`
	FHIRUser    string              `json:"fhirUser"`
	FHIRContext []smart.ContextItem `json:"fhirContext"`
	Roles       []string            `json:"roles"`
	SessionID   string              `json:"sid"`
	Cnf         *confirmation       `json:"cnf"`
	Clearance   *Clearance          `json:"clearance"`
	Purpose     []string            `json:"purpose_of_use"`
	BreakGlass  *BreakGlass         `json:"break_glass"`
}

// confirmation is the cnf claim (RFC 7800). Only x5t#S256 (RFC 8705) is understood.
type confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// BearerToken extracts the token from an Authorization header value. An empty header or another
// scheme is ErrNoToken (RFC 6750 section 3.1: no error code); a Bearer header without exactly one
// well-formed token is invalid_request.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", ErrNoToken
	}
	scheme, tok, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrNoToken
	}
	if tok == "" {
		return "", invalidRequest("the Bearer credentials are empty")
	}
	// RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=') {
			return "", invalidRequest("the Bearer credentials are malformed")
		}
	}
	return tok, nil
}

// Authenticate verifies the bearer token in an Authorization header value.
func (v *Verifier) Authenticate(ctx context.Context, authorization string) (*Principal, error) {
	tok, err := BearerToken(authorization)
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, tok)
}

// Verify checks an access token and returns its Principal. Errors are *Error (or wrap one).
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if len(token) > v.maxSize {
		return nil, invalidToken("the access token is too large", nil)
	}
	if strings.Count(token, ".") != 2 {
		return nil, invalidToken("the access token is not a signed JWT", nil)
	}
	parsed, err := jwt.ParseSigned(token, v.algs)
	if err != nil {
		return nil, invalidToken("the access token is malformed or uses a refused algorithm", err)
	}
	if len(parsed.Headers) != 1 {
		return nil, invalidToken("the access token is malformed", nil)
	}
	h := parsed.Headers[0]
	if err := checkHeader(h); err != nil {
		return nil, err
	}
	key, err := v.keys.lookup(ctx, h.KeyID, h.Algorithm)
	if err != nil {
		if errors.Is(err, errNoKey) {
			return nil, invalidToken("the access token was not signed by a known key", err)
		}
		return nil, err
	}
	var c claims
	if err := parsed.Claims(key, &c); err != nil {
		return nil, invalidToken("the access token signature or claims are invalid", err)
	}
	p, err := v.checkClaims(&c)
	if err != nil {
		return nil, err
	}
	revoked, err := v.revoker.Revoked(ctx, c.ID)
	if err != nil {
		return nil, unavailable("token revocation cannot be checked", err)
	}
	if revoked {
		return nil, invalidToken("the access token has been revoked", nil)
	}
	return p, nil
}

// checkHeader refuses anything but an access token (RFC 9068 typ) and header parameters that
// would point at keys other than ours.
func checkHeader(h jose.Header) error {
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return invalidToken("the token is not an access token (typ must be at+jwt)", nil)
	}
	if h.JSONWebKey != nil {
		return invalidToken("the access token embeds a key", nil)
	}
	for _, name := range []jose.HeaderKey{"jku", "x5u", "x5c", "crit"} {
		if _, ok := h.ExtraHeaders[name]; ok {
			return invalidToken(fmt.Sprintf("the access token header has a %s parameter", name), nil)
		}
	}
	return nil
}

func (v *Verifier) checkClaims(c *claims) (*Principal, error) {
	now := v.now()
	if c.Issuer != v.issuer {
		return nil, invalidToken("the access token was issued by another issuer", nil)
	}
	// Exactly one audience, equal to this FHIR base: no prefix match and no multi-audience
	// tokens that another resource server could replay here (RFC 8725 section 3.9).
	if len(c.Audience) != 1 || c.Audience[0] != v.audience {
		return nil, invalidToken("the access token is not meant for this FHIR server", nil)
	}
	if c.Expiry == nil {
		return nil, invalidToken("the access token has no expiry", nil)
	}
	exp := c.Expiry.Time()
	if !now.Before(exp.Add(v.skew)) {
		return nil, invalidToken("the access token has expired", nil)
	}
	if c.NotBefore != nil && now.Add(v.skew).Before(c.NotBefore.Time()) {
		return nil, invalidToken("the access token is not valid yet", nil)
	}
	var iat time.Time
	if c.IssuedAt != nil {
		iat = c.IssuedAt.Time()
		if now.Add(v.skew).Before(iat) {
			return nil, invalidToken("the access token was issued in the future", nil)
		}
	}
	if c.ID == "" {
		return nil, invalidToken("the access token has no jti", nil)
	}
	if c.Subject == "" || c.ClientID == "" {
		return nil, invalidToken("the access token has no subject or client", nil)
	}
	if c.Patient != "" && !smart.ValidID(c.Patient) {
		return nil, invalidToken("the access token's patient is not a FHIR id", nil)
	}
	if c.Encounter != "" && !smart.ValidID(c.Encounter) {
		return nil, invalidToken("the access token's encounter is not a FHIR id", nil)
	}
	fhirUser := c.FHIRUser
	if fhirUser != "" {
		// The contract is a relative reference; an absolute one on this server is accepted
		// and made relative. Anything else is refused rather than ignored.
		fhirUser = strings.TrimPrefix(fhirUser, v.audience+"/")
		if _, _, ok := smart.SplitReference(fhirUser); !ok {
			return nil, invalidToken("the access token's fhirUser is not a reference to a resource on this server", nil)
		}
	}
	var thumb string
	if c.Cnf != nil {
		// A confirmation method this server cannot check must not degrade the token to a plain
		// bearer token: refuse it.
		if !validThumbprint(c.Cnf.X5tS256) {
			return nil, invalidToken("the access token's cnf claim has no usable x5t#S256", nil)
		}
		thumb = c.Cnf.X5tS256
	}
	if err := checkSecurity(c); err != nil {
		return nil, err
	}
	scopes, dropped := smart.ParseScopes(c.Scope)
	return &Principal{
		Clearance:      c.Clearance,
		PurposeOfUse:   c.Purpose,
		BreakGlass:     c.BreakGlass,
		CertThumbprint: thumb,
		Issuer:         c.Issuer,
		Subject:        c.Subject,
		ClientID:       c.ClientID,
		FHIRUser:       fhirUser,
		Patient:        c.Patient,
		Encounter:      c.Encounter,
		FHIRContext:    c.FHIRContext,
		Scopes:         scopes,
		DroppedScopes:  dropped,
		Roles:          c.Roles,
		JTI:            c.ID,
		SessionID:      c.SessionID,
		IssuedAt:       iat,
		Expiry:         exp,
	}, nil
}
