package authserver

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"

	"github.com/fhirgate/fhirgate/internal/tokens"
)

// accessStrategy mints fhirgate's JWT access tokens for fosite. The storage signature of an
// access token is its jti, so revocation lists and the FHIR side speak of the same id.
type accessStrategy struct {
	minter *tokens.Minter
	now    func() time.Time
	// defaultTTL applies when the session names none.
	defaultTTL time.Duration
	sec        *Security
}

var _ oauth2.AccessTokenStrategy = (*accessStrategy)(nil)

func (a *accessStrategy) AccessTokenSignature(_ context.Context, token string) string {
	return tokens.PeekJTI(token)
}

func (a *accessStrategy) GenerateAccessToken(_ context.Context, r fosite.Requester) (string, string, error) {
	sess, ok := r.GetSession().(*Session)
	if !ok {
		return "", "", fosite.ErrServerError.WithDebug("unexpected session type")
	}
	now := a.now().UTC().Truncate(time.Second)
	ttl := sess.AccessTTL
	if ttl <= 0 {
		ttl = a.defaultTTL
	}
	exp := now.Add(ttl)
	sess.SetExpiresAt(fosite.AccessToken, exp)
	c := tokens.AccessClaims{
		Issuer: a.minter.Issuer, Audience: a.minter.Audience,
		Subject: sess.GetSubject(), Expiry: exp.Unix(), IssuedAt: now.Unix(), NotBefore: now.Unix(),
		ID: tokens.NewJTI(), ClientID: r.GetClient().GetID(), Scope: strings.Join(r.GetGrantedScopes(), " "),
		Patient: sess.Patient, Encounter: sess.Encounter, FHIRUser: sess.FHIRUser, FHIRContext: sess.FHIRContext,
		Roles: sess.Roles, SID: sess.SID,
		Clearance:    a.sec.Clearance(sess.Roles, sess.Username != "", r.GetClient().GetID()),
		PurposeOfUse: sess.PurposeOfUse, BreakGlass: sess.BreakGlass,
	}
	if sess.Username == "" && len(c.PurposeOfUse) == 0 && a.sec != nil {
		c.PurposeOfUse = a.sec.purposes(a.sec.ClientRoles[c.ClientID])
	}
	if sess.CertThumbprint != "" {
		c.Cnf = &tokens.Confirmation{X5tS256: sess.CertThumbprint}
	}
	tok, err := a.minter.SignAccess(c)
	if err != nil {
		return "", "", fosite.ErrServerError.WithWrap(err)
	}
	return tok, c.ID, nil
}

func (a *accessStrategy) ValidateAccessToken(_ context.Context, _ fosite.Requester, token string) error {
	_, err := a.minter.VerifyAccess(token)
	if err != nil {
		return fosite.ErrTokenExpired.WithWrap(err).WithHint("The access token is not valid.")
	}
	return nil
}

// hmacStrategy is fosite's HMAC strategy for codes and refresh tokens with the expiry checked on
// fhirgate's clock as well.
type hmacStrategy struct {
	*oauth2.HMACSHAStrategyUnPrefixed
	now func() time.Time
	// reload, when set, rereads the keys (rate limited) after a failed HMAC check, since
	// another instance may have made the value with a secret rotated since this one's last
	// reload; the check is then tried once more.
	reload func(ctx context.Context)
}

// retry runs check again after a reload when it failed.
func (h *hmacStrategy) retry(ctx context.Context, check func() error) error {
	err := check()
	if err == nil || h.reload == nil {
		return err
	}
	h.reload(ctx)
	return check()
}

func (h *hmacStrategy) expired(r fosite.Requester, kind fosite.TokenType) bool {
	exp := r.GetSession().GetExpiresAt(kind)
	return !exp.IsZero() && !h.now().Before(exp)
}

func (h *hmacStrategy) ValidateAuthorizeCode(ctx context.Context, r fosite.Requester, token string) error {
	if h.expired(r, fosite.AuthorizeCode) {
		return fosite.ErrTokenExpired.WithHint("The authorization code expired.")
	}
	return h.retry(ctx, func() error { return h.HMACSHAStrategyUnPrefixed.ValidateAuthorizeCode(ctx, r, token) })
}

func (h *hmacStrategy) ValidateRefreshToken(ctx context.Context, r fosite.Requester, token string) error {
	if h.expired(r, fosite.RefreshToken) {
		return fosite.ErrTokenExpired.WithHint("The refresh token expired.")
	}
	if sess, ok := r.GetSession().(*Session); ok && !sess.OnlineUntil.IsZero() && !h.now().Before(sess.OnlineUntil) {
		return fosite.ErrTokenExpired.WithHint("The online_access grant ended with the login session.")
	}
	return h.retry(ctx, func() error { return h.HMACSHAStrategyUnPrefixed.ValidateRefreshToken(ctx, r, token) })
}

// idStrategy signs OpenID Connect ID tokens (RS256) with fhirUser, nonce and sid.
type idStrategy struct {
	minter   *tokens.Minter
	fhirBase string
	now      func() time.Time
	sec      *Security
}

var _ openid.OpenIDConnectTokenStrategy = (*idStrategy)(nil)

func (s *idStrategy) GenerateIDToken(_ context.Context, lifespan time.Duration, r fosite.Requester) (string, error) {
	sess, ok := r.GetSession().(*Session)
	if !ok || sess.Username == "" {
		return "", fosite.ErrServerError.WithDebug("an ID token needs a user session")
	}
	now := s.now().UTC().Truncate(time.Second)
	c := tokens.IDClaims{
		Issuer: s.minter.Issuer, Subject: sess.Username, Audience: []string{r.GetClient().GetID()},
		AZP: r.GetClient().GetID(), IssuedAt: now.Unix(), Expiry: now.Add(lifespan).Unix(),
		Nonce: r.GetRequestForm().Get("nonce"), SID: sess.SID,
	}
	if !sess.AuthTime.IsZero() {
		c.AuthTime = sess.AuthTime.Unix()
	}
	if sess.FHIRUser != "" && r.GetGrantedScopes().Has("fhirUser") {
		c.FHIRUser = strings.TrimRight(s.fhirBase, "/") + "/" + sess.FHIRUser
	}
	if s.sec != nil {
		c.Security = &tokens.IDSecurity{
			Roles: sess.Roles, Clearance: s.sec.Clearance(sess.Roles, true, r.GetClient().GetID()),
			PurposeOfUse: sess.PurposeOfUse, BreakGlass: sess.BreakGlass != nil,
		}
	}
	tok, err := s.minter.SignID(c)
	if err != nil {
		return "", fosite.ErrServerError.WithWrap(err)
	}
	return tok, nil
}

// fositeErr turns a fosite error into an RFC 6749 triple without internal debug text.
func fositeErr(err error) (code, description string, status int) {
	var rfc *fosite.RFC6749Error
	if !errors.As(err, &rfc) {
		rfc = fosite.ErrorToRFC6749Error(err)
	}
	return rfc.ErrorField, rfc.GetDescription(), rfc.CodeField
}
