package authserver

import (
	"context"
	"crypto/subtle"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/ory/fosite"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

// token is the token endpoint: authorization_code, refresh_token, client_credentials and the
// break-glass token exchange (exchange.go). Every answer is audited: token-issued (or
// token-refreshed), success with the new token's jti or denied with the OAuth error code. An
// issued token is answered only once its event is recorded.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// Public browser apps call this endpoint cross-origin (SMART 2.2); no cookies are involved.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		s.preflight(w, r)
		return
	}
	ev := &audit.Event{Action: audit.ActionTokenIssued}
	if r.Method != http.MethodPost {
		s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.InvalidRequest, Description: "The token endpoint accepts POST only."})
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.InvalidRequest, Description: "The body must be application/x-www-form-urlencoded."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.InvalidRequest, Description: "The body could not be read."})
		return
	}
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case oauth.GrantAuthorizationCode, oauth.GrantRefreshToken, oauth.GrantClientCredentials:
		ev.Action, ev.Reasons = tokenAction(grant), []string{grant}
	case oauth.GrantTokenExchange:
		if !s.cfg.Security.breakGlassEnabled() {
			s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.UnsupportedGrantType, Description: "Supported grant types: authorization_code, refresh_token, client_credentials."})
			return
		}
		ev.Action, ev.Reasons = tokenAction(grant), []string{grant}
	case "":
		s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.InvalidRequest, Description: "grant_type is required."})
		return
	default:
		s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.UnsupportedGrantType, Description: "Supported grant types: authorization_code, refresh_token, client_credentials."})
		return
	}
	for _, p := range []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id", "client_assertion", "client_assertion_type",
		"subject_token", "subject_token_type", "actor_token", "actor_token_type", "requested_token_type", ParamBreakGlassReason} {
		if len(r.PostForm[p]) > 1 {
			s.tokenFail(w, r, ev, &oauth.Error{Code: oauth.InvalidRequest, Description: "Parameter " + p + " is repeated."})
			return
		}
	}
	s.namePublicRefreshClient(r)
	// Key rotation and reload happen here, before fosite opens a store transaction.
	if err := s.keys.Maintain(ctx); err != nil {
		s.log.ErrorContext(ctx, "key maintenance failed", "error", err)
	}
	sess := newSession()
	ar, err := s.provider.NewAccessRequest(ctx, r, sess)
	if err != nil {
		s.writeTokenError(w, r, ev, err)
		return
	}
	// From here on the client is authenticated.
	ev.ClientID = ar.GetClient().GetID()
	sess, _ = ar.GetSession().(*Session)
	if sess == nil {
		s.writeTokenError(w, r, ev, fosite.ErrServerError.WithHint("unexpected session"))
		return
	}
	ev.Subject, ev.FHIRUser, ev.Roles, ev.Patients = sess.GetSubject(), sess.FHIRUser, sess.Roles, patients(sess.Patient)
	if err := bindCertificate(r, grant, ar.GetClient(), sess); err != nil {
		s.writeTokenError(w, r, ev, err)
		return
	}
	ttl := s.auth.AccessTokenTTL
	switch grant {
	case oauth.GrantTokenExchange:
		// Every check passed: the review item, the alert and the short TTL, as at authorize.
		if err := s.startBreakGlass(r, sess, strings.TrimSpace(r.PostForm.Get(ParamBreakGlassReason)), " by token exchange"); err != nil {
			s.log.ErrorContext(ctx, "break-glass review item could not be stored", "error", err)
			s.writeTokenError(w, r, ev, fosite.ErrServerError.WithHint("Emergency access could not be recorded."))
			return
		}
		ttl = sess.AccessTTL
	case oauth.GrantClientCredentials:
		ttl = s.auth.BackendAccessTokenTTL
		sess.ClientID = ar.GetClient().GetID()
		ev.Subject = sess.GetSubject()
		// Backend Services: system/ scopes within the client's registration. user/ and patient/
		// scopes would need context a backend cannot establish: they are not granted.
		requested, _ := smart.ParseScopes(strings.Join(ar.GetRequestedScopes(), " "))
		c, ok := ar.GetClient().(*Client)
		if !ok {
			s.writeTokenError(w, r, ev, fosite.ErrServerError)
			return
		}
		for _, sc := range requested.Intersect(c.Scopes()) {
			if sc.IsResource() && sc.Context == smart.ContextSystem {
				ar.GrantScope(sc.Echo())
			}
		}
		if len(ar.GetGrantedScopes()) == 0 {
			s.writeTokenError(w, r, ev, fosite.ErrInvalidScope.WithHint("Request at least one system/ scope the client is registered for."))
			return
		}
		ar.GrantAudience(s.fhirBase)
	case oauth.GrantRefreshToken:
		if scope := r.PostForm.Get("scope"); scope != "" {
			// The scope of a refreshed token may only narrow (RFC 6749 6): every requested scope
			// must be covered by the original grant. An equal set is fine.
			orig, _ := smart.ParseScopes(strings.Join(ar.GetGrantedScopes(), " "))
			want, dropped := smart.ParseScopes(scope)
			if len(dropped) > 0 {
				s.writeTokenError(w, r, ev, fosite.ErrInvalidScope.WithHint("The scope contains unknown values."))
				return
			}
			for _, sc := range want {
				if !orig.Covers(sc) {
					s.writeTokenError(w, r, ev, fosite.ErrInvalidScope.WithHint("The requested scope exceeds the original grant."))
					return
				}
			}
			areq, ok := ar.(*fosite.AccessRequest)
			if !ok {
				s.writeTokenError(w, r, ev, fosite.ErrServerError)
				return
			}
			areq.GrantedScope = nil
			for _, sc := range want {
				areq.GrantScope(sc.Echo())
			}
		}
	}
	sess.AccessTTL = ttl
	resp, err := s.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		s.writeTokenError(w, r, ev, err)
		return
	}
	// Fail closed: a token whose issue is not in the audit trail is withdrawn, not answered.
	ev.Outcome, ev.Status, ev.TokenID = audit.OutcomeSuccess, http.StatusOK, tokens.PeekJTI(resp.GetAccessToken())
	if err := s.RecordEvent(r, *ev); err != nil {
		s.log.ErrorContext(ctx, "token withheld: its audit event could not be recorded", "grant_type", grant, "client_id", ev.ClientID, "error", err)
		s.withdrawGrant(ctx, ar.GetID())
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "Try again later.", Status: http.StatusServiceUnavailable})
		return
	}
	if s.cfg.TokenIssued != nil {
		s.cfg.TokenIssued(grant)
	}
	resp.SetExpiresIn(ttl)
	if sess.Patient != "" {
		resp.SetExtra("patient", sess.Patient)
	}
	if sess.Encounter != "" {
		resp.SetExtra("encounter", sess.Encounter)
	}
	if len(sess.FHIRContext) > 0 {
		resp.SetExtra("fhirContext", sess.FHIRContext)
	}
	if sess.NeedPatientBanner != nil {
		resp.SetExtra("need_patient_banner", *sess.NeedPatientBanner)
	}
	if sess.StyleURL != "" {
		resp.SetExtra("smart_style_url", sess.StyleURL)
	}
	s.log.InfoContext(ctx, "token issued", "grant_type", grant, "client_id", ar.GetClient().GetID(), "subject", sess.GetSubject(), "scope", strings.Join(ar.GetGrantedScopes(), " "))
	s.provider.WriteAccessResponse(ctx, w, ar, resp)
}

// withdrawGrant revokes the tokens of a grant that were stored but never answered (their event
// could not be recorded): its refresh tokens stop working and its access tokens are listed as
// revoked.
func (s *Server) withdrawGrant(ctx context.Context, requestID string) {
	ctx = context.WithoutCancel(ctx)
	if err := s.db.DeactivateOAuthRequestsByRequestID(ctx, sqlstore.KindRefresh, requestID); err != nil {
		s.log.ErrorContext(ctx, "withdrawing unrecorded refresh token failed", "error", err)
	}
	if err := s.db.RevokeAccessByRequestID(ctx, requestID); err != nil {
		s.log.ErrorContext(ctx, "withdrawing unrecorded access token failed", "error", err)
	}
}

// tokenFail answers a refused token request and records it (denied, or error for 5xx).
func (s *Server) tokenFail(w http.ResponseWriter, r *http.Request, ev *audit.Event, oe *oauth.Error) {
	status := oe.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	ev.Status, ev.Outcome = status, audit.OutcomeDenied
	if status >= 500 {
		ev.Outcome = audit.OutcomeError
	}
	if ev.ClientID == "" {
		ev.ClientID = claimedClientID(r)
	}
	// The error code first, then the grant type when known.
	ev.Reasons = append([]string{oe.Code}, ev.Reasons...)
	s.recordOrLog(r, *ev)
	oauth.WriteError(w, r, oe)
}

// writeTokenError maps a fosite error to the RFC 6749 5.2 answer SMART expects, logs the
// internal cause (never sent to the client) and records the refusal.
func (s *Server) writeTokenError(w http.ResponseWriter, r *http.Request, ev *audit.Event, err error) {
	code, desc, status := fositeErr(err)
	switch code {
	case "error", "":
		code, desc, status = oauth.ServerError, "internal error", http.StatusInternalServerError
	case "jti_known":
		code, status = oauth.InvalidClient, http.StatusUnauthorized
	case "request_unauthorized", "token_inactive", "invalid_token":
		code, status = oauth.InvalidGrant, http.StatusBadRequest
	case "consent_required", "login_required":
		code, status = oauth.InvalidGrant, http.StatusBadRequest
	case oauth.InvalidClient:
		status = http.StatusUnauthorized
	case oauth.UnauthorizedClient, oauth.InvalidGrant, oauth.InvalidScope, oauth.InvalidRequest, oauth.UnsupportedGrantType:
		status = http.StatusBadRequest
	}
	var rfc *fosite.RFC6749Error
	cause := err
	if errors.As(err, &rfc) && rfc.Unwrap() != nil {
		cause = rfc.Unwrap()
	}
	level := s.log.InfoContext
	if status >= 500 {
		level = s.log.ErrorContext
	}
	level(r.Context(), "token request refused", "error", code, "description", desc, "cause", errString(cause))
	s.tokenFail(w, r, ev, &oauth.Error{Code: code, Description: desc, Status: status})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) {
		return rfc.ErrorField + ": " + rfc.GetDescription() + " " + rfc.DebugField
	}
	return err.Error()
}

// bindCertificate applies RFC 8705 certificate binding. A client registered for bound tokens must
// present its TLS client certificate, and the grant's tokens carry that certificate's thumbprint;
// a bound refresh token is redeemed only over a connection with the same certificate, which is
// what makes a stolen refresh token of a public client useless (section 4).
func bindCertificate(r *http.Request, grant string, client fosite.Client, sess *Session) error {
	presented := ""
	if cnf := tokens.BindToConnection(r.TLS); cnf != nil {
		presented = cnf.X5tS256
	}
	if grant == oauth.GrantRefreshToken && sess.CertThumbprint != "" {
		if subtle.ConstantTimeCompare([]byte(presented), []byte(sess.CertThumbprint)) != 1 {
			return fosite.ErrInvalidGrant.WithHint("The refresh token is bound to a TLS client certificate this connection did not present.")
		}
		return nil
	}
	// A bound subject token is exchanged only over a connection with its certificate, and the
	// break-glass token is bound to the same one (invalid_request: RFC 8693 2.2.2).
	if grant == oauth.GrantTokenExchange && sess.CertThumbprint != "" {
		if subtle.ConstantTimeCompare([]byte(presented), []byte(sess.CertThumbprint)) != 1 {
			return fosite.ErrInvalidRequest.WithHint("The subject token is bound to a TLS client certificate this connection did not present.")
		}
		return nil
	}
	c, ok := client.(*Client)
	if !ok || !c.Metadata.CertificateBoundAccessTokens {
		return nil
	}
	if presented == "" {
		return fosite.ErrInvalidRequest.WithHint("This client's tokens are bound to its TLS client certificate: connect with it.")
	}
	sess.CertThumbprint = presented
	return nil
}
