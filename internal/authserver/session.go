package authserver

import (
	"encoding/json"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

// Session is what fhirgate keeps with every grant: who authorized it and the SMART launch context.
// It is stored (as JSON) with codes and tokens and is the source of the access-token claims, the
// token-response context parameters, the ID token and introspection answers.
type Session struct {
	// Username is the user who authorized; empty for client_credentials.
	Username string `json:"username,omitempty"`
	// ClientID is the client the grant was made to.
	ClientID string `json:"client_id"`
	// FHIRUser is the user's resource as a relative reference (Type/id).
	FHIRUser string   `json:"fhir_user,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	// SID is the browser login session the grant came from.
	SID               string              `json:"sid,omitempty"`
	AuthTime          time.Time           `json:"auth_time,omitzero"`
	Patient           string              `json:"patient,omitempty"`
	Encounter         string              `json:"encounter,omitempty"`
	FHIRContext       []smart.ContextItem `json:"fhir_context,omitempty"`
	NeedPatientBanner *bool               `json:"need_patient_banner,omitempty"`
	StyleURL          string              `json:"smart_style_url,omitempty"`
	// OnlineUntil caps the life of an online_access grant (the login session's end).
	OnlineUntil time.Time `json:"online_until,omitzero"`
	// PurposeOfUse are the v3 ActReason codes of the grant's tokens (role defaults, narrowed
	// by the authorize request; BTG for emergency access).
	PurposeOfUse []string `json:"purpose_of_use,omitempty"`
	// BreakGlass is set on an emergency-access grant.
	BreakGlass *tokens.BreakGlass `json:"break_glass,omitempty"`
	// AccessTTL is the lifetime of access tokens minted for this grant.
	AccessTTL time.Duration `json:"access_ttl,omitempty"`
	// CertThumbprint is the x5t#S256 of the TLS client certificate the grant's tokens are bound
	// to (RFC 8705): access tokens carry it as cnf and refreshes must present the same one.
	CertThumbprint string `json:"x5t_s256,omitempty"`

	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
	// OIDC holds the ID token claims fosite's OpenID Connect handlers read and write.
	OIDC *jwt.IDTokenClaims `json:"oidc,omitempty"`
	// Headers is required by fosite's openid.Session; fhirgate signs ID tokens itself.
	Headers *jwt.Headers `json:"-"`
}

var (
	_ fosite.Session = (*Session)(nil)
	_ openid.Session = (*Session)(nil)
)

func newSession() *Session { return &Session{} }

// SetExpiresAt implements fosite.Session.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	s.ExpiresAt[key] = exp
}

// GetExpiresAt implements fosite.Session.
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	if s.ExpiresAt == nil {
		return time.Time{}
	}
	return s.ExpiresAt[key]
}

// GetUsername implements fosite.Session.
func (s *Session) GetUsername() string { return s.Username }

// GetSubject implements fosite.Session: the username, or the client id of a client grant.
func (s *Session) GetSubject() string {
	if s.Username != "" {
		return s.Username
	}
	return s.ClientID
}

// Clone implements fosite.Session with a deep copy.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	data, err := json.Marshal(s)
	if err != nil {
		panic(err) // every field marshals
	}
	c := &Session{}
	if err := json.Unmarshal(data, c); err != nil {
		panic(err)
	}
	return c
}

// IDTokenClaims implements openid.Session.
func (s *Session) IDTokenClaims() *jwt.IDTokenClaims {
	if s.OIDC == nil {
		s.OIDC = &jwt.IDTokenClaims{}
	}
	return s.OIDC
}

// IDTokenHeaders implements openid.Session.
func (s *Session) IDTokenHeaders() *jwt.Headers {
	if s.Headers == nil {
		s.Headers = &jwt.Headers{}
	}
	return s.Headers
}
