package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// AccessTokenType is the JOSE typ of access tokens (RFC 9068).
const AccessTokenType = "at+jwt"

// ErrInvalid is wrapped by every verification failure.
var ErrInvalid = errors.New("tokens: invalid token")

// AccessClaims are the claims of an access token. Optional claims are omitted when empty.
type AccessClaims struct {
	Issuer string `json:"iss"`
	// Subject is the username, or the client id for client_credentials.
	Subject string `json:"sub"`
	// Audience is the FHIR base URL, as one exact string.
	Audience  string `json:"aud"`
	Expiry    int64  `json:"exp"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	ID        string `json:"jti"`
	ClientID  string `json:"client_id"`
	// Scope is the space-separated granted scopes as returned to the client.
	Scope       string              `json:"scope"`
	Patient     string              `json:"patient,omitempty"`
	Encounter   string              `json:"encounter,omitempty"`
	FHIRUser    string              `json:"fhirUser,omitempty"` // relative Type/id
	FHIRContext []smart.ContextItem `json:"fhirContext,omitempty"`
	Roles       []string            `json:"roles,omitempty"`
	SID         string              `json:"sid,omitempty"`
	// Cnf binds the token to the client's TLS certificate (RFC 8705 section 3.1); nil for an
	// unbound bearer token.
	Cnf *Confirmation `json:"cnf,omitempty"`
	// Clearance is the security labels the holder may see (confidentiality ceiling and
	// sensitivity codes), from the roles of the user and the client.
	Clearance *Clearance `json:"clearance,omitempty"`
	// PurposeOfUse are v3 ActReason codes (TREAT, BTG, ...).
	PurposeOfUse []string `json:"purpose_of_use,omitempty"`
	// BreakGlass is set on an emergency-access token.
	BreakGlass *BreakGlass `json:"break_glass,omitempty"`
}

// Clearance is the clearance claim: the highest v3 confidentiality code and the v3 ActCode
// sensitivity codes the holder may see.
type Clearance struct {
	Confidentiality string   `json:"confidentiality"`
	Sensitivity     []string `json:"sensitivity,omitempty"`
}

// BreakGlass is the break_glass claim: the clinician's written reason and the review item.
type BreakGlass struct {
	Reason string `json:"reason"`
	Review string `json:"review,omitempty"`
}

// Confirmation is the cnf claim of a certificate-bound access token (RFC 8705 section 3.1).
type Confirmation struct {
	// X5tS256 is the base64url (unpadded) SHA-256 of the DER client certificate.
	X5tS256 string `json:"x5t#S256"`
}

// CertThumbprint is the RFC 8705 x5t#S256 of a certificate: base64url without padding of the
// SHA-256 of its DER encoding. It is "" for nil.
func CertThumbprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// BindToConnection returns the cnf claim binding a token to the client certificate of a TLS
// connection (its leaf), or nil when the connection is not TLS or presented no certificate.
func BindToConnection(state *tls.ConnectionState) *Confirmation {
	if state == nil || len(state.PeerCertificates) == 0 {
		return nil
	}
	return &Confirmation{X5tS256: CertThumbprint(state.PeerCertificates[0])}
}

// IDClaims are the claims of an OpenID Connect ID token.
type IDClaims struct {
	Issuer   string   `json:"iss"`
	Subject  string   `json:"sub"`
	Audience []string `json:"aud"`
	Expiry   int64    `json:"exp"`
	IssuedAt int64    `json:"iat"`
	AuthTime int64    `json:"auth_time,omitempty"`
	Nonce    string   `json:"nonce,omitempty"`
	// FHIRUser is the absolute URL of the user's FHIR resource.
	FHIRUser string `json:"fhirUser,omitempty"`
	SID      string `json:"sid,omitempty"`
	// AZP is the authorized party (the client id).
	AZP string `json:"azp,omitempty"`
	// Security tells the app the user's roles, clearance and purpose of use.
	Security *IDSecurity `json:"security,omitempty"`
}

// IDSecurity is the security claim of an ID token.
type IDSecurity struct {
	Roles        []string   `json:"roles,omitempty"`
	Clearance    *Clearance `json:"clearance,omitempty"`
	PurposeOfUse []string   `json:"purpose_of_use,omitempty"`
	BreakGlass   bool       `json:"break_glass,omitempty"`
}

// Minter signs and verifies fhirgate's JWTs.
type Minter struct {
	Keys *keys.Manager
	// Issuer is the iss of every token; Audience the aud of access tokens (the FHIR base URL).
	Issuer, Audience string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (m *Minter) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// NewJTI returns a random 128-bit token id.
func NewJTI() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b)
}

// SignAccess signs c with the current access-token key (ES256, typ at+jwt, kid set).
func (m *Minter) SignAccess(c AccessClaims) (string, error) {
	return m.sign(keys.PurposeAccess, AccessTokenType, c)
}

// SignID signs c with the current ID-token key (RS256, kid set).
func (m *Minter) SignID(c IDClaims) (string, error) {
	return m.sign(keys.PurposeID, "JWT", c)
}

func (m *Minter) sign(p keys.Purpose, typ string, claims any) (string, error) {
	k, err := m.Keys.Current(p)
	if err != nil {
		return "", err
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Alg), Key: jose.JSONWebKey{Key: k.Signer, KeyID: k.KID, Algorithm: k.Alg}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", fmt.Errorf("tokens: signer: %w", err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("tokens: sign: %w", err)
	}
	return tok, nil
}

// PeekJTI returns the jti of a compact JWS without verifying it, for looking the token up before
// Verify is called. It returns "" for anything that is not a well-formed ES256 JWT.
func PeekJTI(raw string) string {
	t, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return ""
	}
	var c struct {
		ID string `json:"jti"`
	}
	if err := t.UnsafeClaimsWithoutVerification(&c); err != nil {
		return ""
	}
	return c.ID
}

// VerifyAccess checks an access token this server issued: algorithm ES256 only, typ at+jwt, a
// published kid, the signature, iss, the exact aud and the validity window at Now. It does not
// check revocation.
func (m *Minter) VerifyAccess(raw string) (AccessClaims, error) {
	var c AccessClaims
	t, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(t.Headers) != 1 {
		return c, fmt.Errorf("%w: one signature expected", ErrInvalid)
	}
	h := t.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != AccessTokenType {
		return c, fmt.Errorf("%w: typ %q", ErrInvalid, typ)
	}
	pub, err := m.Keys.Verifier(keys.PurposeAccess, h.KeyID)
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := t.Claims(pub.Key, &c); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	now := m.now().Unix()
	switch {
	case c.Issuer != m.Issuer:
		return c, fmt.Errorf("%w: iss", ErrInvalid)
	case c.Audience != m.Audience:
		return c, fmt.Errorf("%w: aud", ErrInvalid)
	case c.Expiry <= now:
		return c, fmt.Errorf("%w: expired", ErrInvalid)
	case c.NotBefore > now+60:
		return c, fmt.Errorf("%w: not yet valid", ErrInvalid)
	case c.ID == "":
		return c, fmt.Errorf("%w: no jti", ErrInvalid)
	}
	return c, nil
}
