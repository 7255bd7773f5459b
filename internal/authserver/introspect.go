package authserver

import (
	"errors"
	"net/http"
	"strings"

	"github.com/ory/fosite"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

// introspectionResponse is RFC 7662 2.2 as SMART profiles it (token-introspection.md).
type introspectionResponse struct {
	Active      bool   `json:"active"`
	Scope       string `json:"scope,omitempty"`
	ClientID    string `json:"client_id,omitempty"`
	Username    string `json:"username,omitempty"`
	TokenType   string `json:"token_type,omitempty"`
	Exp         int64  `json:"exp,omitempty"`
	Iat         int64  `json:"iat,omitempty"`
	Sub         string `json:"sub,omitempty"`
	Aud         string `json:"aud,omitempty"`
	Iss         string `json:"iss,omitempty"`
	Jti         string `json:"jti,omitempty"`
	Patient     string `json:"patient,omitempty"`
	Encounter   string `json:"encounter,omitempty"`
	FHIRContext any    `json:"fhirContext,omitempty"`
	FHIRUser    string `json:"fhirUser,omitempty"`
	// Cnf is the certificate binding of a bound access token (RFC 8705 section 3.2).
	Cnf *tokens.Confirmation `json:"cnf,omitempty"`
}

// introspect answers RFC 7662 token introspection. Callers authenticate as a confidential client
// or present an active access token of this server as a Bearer token (SMART: "SHALL accept a
// Bearer token of an appropriately-scoped SMART App or Backend Service"). Any token that is not
// active gets exactly {"active":false}.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	ev := audit.Event{Action: audit.ActionTokenIntrospected}
	fail := func(oe *oauth.Error) {
		ev.Status, ev.Outcome, ev.Reasons = oe.StatusCode(), audit.OutcomeDenied, []string{oe.Code}
		s.recordOrLog(r, ev)
		oauth.WriteError(w, r, oe)
	}
	if r.Method != http.MethodPost {
		fail(&oauth.Error{Code: oauth.InvalidRequest, Description: "Use POST."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		fail(&oauth.Error{Code: oauth.InvalidRequest, Description: "The body could not be read."})
		return
	}
	caller, ok := s.introspectionCaller(r)
	ev.ClientID = caller
	if !ok {
		if ev.ClientID == "" {
			ev.ClientID = claimedClientID(r)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate"`)
		fail(&oauth.Error{Code: oauth.InvalidClient, Description: "Authenticate as a confidential client or with a Bearer access token.", Status: http.StatusUnauthorized})
		return
	}
	// The answer is recorded with the caller as ClientID and, for an active token, the token's
	// user, patient and jti (never the token).
	answer := func(resp introspectionResponse) {
		ev.Status, ev.Outcome = http.StatusOK, audit.OutcomeSuccess
		if resp.Active {
			ev.Reasons = []string{"active", resp.TokenType}
			ev.TokenID, ev.Patients, ev.Subject = resp.Jti, patients(resp.Patient), resp.Sub
			ev.FHIRUser = strings.TrimPrefix(resp.FHIRUser, s.fhirBase+"/")
		} else {
			ev.Reasons = []string{"inactive"}
		}
		s.recordOrLog(r, ev)
		oauth.WriteJSON(w, http.StatusOK, resp)
	}
	tok := r.PostForm.Get("token")
	inactive := introspectionResponse{Active: false}
	if tok == "" {
		answer(inactive)
		return
	}
	if r.PostForm.Get("token_type_hint") != "refresh_token" {
		if resp, ok := s.introspectAccess(r, tok); ok {
			answer(resp)
			return
		}
	}
	if resp, ok := s.introspectRefresh(r, tok); ok {
		answer(resp)
		return
	}
	if r.PostForm.Get("token_type_hint") == "refresh_token" {
		if resp, ok := s.introspectAccess(r, tok); ok {
			answer(resp)
			return
		}
	}
	answer(inactive)
}

// introspectionCaller reports whether the request is authorized to introspect, and who the
// caller is (the client id of the Bearer token or of the authenticated client).
func (s *Server) introspectionCaller(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		c, err := s.activeAccess(r, strings.TrimSpace(h[7:]))
		if err != nil {
			return "", false
		}
		return c.ClientID, true
	}
	c, err := s.authenticateClient(r.Context(), r, r.PostForm)
	if err != nil {
		return "", false
	}
	return c.GetID(), !c.IsPublic()
}

// activeAccess verifies an access token and checks it is neither revoked nor deleted.
func (s *Server) activeAccess(r *http.Request, tok string) (tokens.AccessClaims, error) {
	claims, err := s.minter.VerifyAccess(tok)
	if err != nil {
		return claims, err
	}
	rec, err := s.db.GetOAuthRequest(r.Context(), sqlstore.KindAccess, claims.ID)
	if err != nil || !rec.Active {
		return claims, errors.New("access token revoked")
	}
	if revoked, err := s.db.Revoked(r.Context(), claims.ID); err != nil || revoked {
		return claims, errors.New("access token revoked")
	}
	return claims, nil
}

func (s *Server) absoluteFHIRUser(ref string) string {
	if ref == "" {
		return ""
	}
	return s.fhirBase + "/" + ref
}

func (s *Server) introspectAccess(r *http.Request, tok string) (introspectionResponse, bool) {
	c, err := s.activeAccess(r, tok)
	if err != nil {
		return introspectionResponse{}, false
	}
	resp := introspectionResponse{
		Active: true, Scope: c.Scope, ClientID: c.ClientID, TokenType: "Bearer", Exp: c.Expiry, Iat: c.IssuedAt,
		Sub: c.Subject, Aud: c.Audience, Iss: c.Issuer, Jti: c.ID, Patient: c.Patient, Encounter: c.Encounter,
		FHIRUser: s.absoluteFHIRUser(c.FHIRUser), Cnf: c.Cnf,
	}
	if c.Subject != c.ClientID {
		resp.Username = c.Subject
	}
	if len(c.FHIRContext) > 0 {
		resp.FHIRContext = c.FHIRContext
	}
	return resp, true
}

func (s *Server) introspectRefresh(r *http.Request, tok string) (introspectionResponse, bool) {
	ctx := r.Context()
	sig := s.hmacs.RefreshTokenSignature(ctx, tok)
	store := &fositeStore{db: s.db, clients: s.clients, now: s.now}
	req, err := store.GetRefreshTokenSession(ctx, sig, nil)
	if err != nil {
		return introspectionResponse{}, false
	}
	if err := s.hmacs.ValidateRefreshToken(ctx, req, tok); err != nil {
		return introspectionResponse{}, false
	}
	sess, ok := req.GetSession().(*Session)
	if !ok {
		return introspectionResponse{}, false
	}
	resp := introspectionResponse{
		Active: true, Scope: strings.Join(req.GetGrantedScopes(), " "), ClientID: req.GetClient().GetID(),
		TokenType: "refresh_token", Sub: sess.GetSubject(), Username: sess.Username, Iss: s.issuer, Aud: s.fhirBase,
		Iat: req.GetRequestedAt().Unix(), Patient: sess.Patient, Encounter: sess.Encounter, FHIRUser: s.absoluteFHIRUser(sess.FHIRUser),
	}
	if exp := sess.GetExpiresAt(fosite.RefreshToken); !exp.IsZero() {
		resp.Exp = exp.Unix()
	}
	if len(sess.FHIRContext) > 0 {
		resp.FHIRContext = sess.FHIRContext
	}
	return resp, true
}

// revoke is RFC 7009 revocation of access and refresh tokens. Revoking either revokes the whole
// grant (its refresh tokens and access tokens). Unknown tokens get 200, as the RFC requires.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		s.preflight(w, r)
		return
	}
	ev := audit.Event{Action: audit.ActionTokenRevoked}
	record := func(status int, outcome audit.Outcome, reasons ...string) {
		ev.Status, ev.Outcome, ev.Reasons = status, outcome, reasons
		s.recordOrLog(r, ev)
	}
	if r.Method != http.MethodPost {
		record(http.StatusBadRequest, audit.OutcomeDenied, oauth.InvalidRequest)
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidRequest, Description: "Use POST."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	// Which token this is, looked up before fosite revokes it, for the event (fosite reports
	// only success or failure).
	kind := "unknown"
	if r.ParseForm() == nil {
		ev.ClientID = claimedClientID(r)
		kind = s.describeToken(r, r.PostForm.Get("token"), &ev)
	}
	err := s.provider.NewRevocationRequest(ctx, r)
	switch {
	case err == nil:
		s.log.InfoContext(ctx, "token revoked")
		record(http.StatusOK, audit.OutcomeSuccess, kind)
		oauth.NoStore(w)
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, fosite.ErrInvalidClient):
		record(http.StatusUnauthorized, audit.OutcomeDenied, oauth.InvalidClient)
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidClient, Description: "Client authentication failed.", Status: http.StatusUnauthorized})
	case errors.Is(err, fosite.ErrInvalidRequest):
		code, desc, _ := fositeErr(err)
		record(http.StatusBadRequest, audit.OutcomeDenied, code)
		oauth.WriteError(w, r, &oauth.Error{Code: code, Description: desc})
	case errors.Is(err, fosite.ErrUnauthorizedClient):
		// The token belongs to another client: answer as for an unknown token, revoke nothing.
		record(http.StatusOK, audit.OutcomeDenied, oauth.UnauthorizedClient)
		oauth.NoStore(w)
		w.WriteHeader(http.StatusOK)
	default:
		s.log.ErrorContext(ctx, "revocation failed", "error", errString(err))
		record(http.StatusServiceUnavailable, audit.OutcomeError, oauth.TemporarilyUnavailable)
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.TemporarilyUnavailable, Description: "Try again later.", Status: http.StatusServiceUnavailable})
	}
}

// describeToken fills ev with what a token to be revoked names (user, patient, jti; never the
// token) and returns its kind: "access_token", "refresh_token" or "unknown". The client id
// stays the caller's (fosite refuses to revoke another client's token).
func (s *Server) describeToken(r *http.Request, tok string, ev *audit.Event) string {
	if tok == "" {
		return "unknown"
	}
	if c, err := s.minter.VerifyAccess(tok); err == nil {
		ev.TokenID, ev.Subject, ev.FHIRUser, ev.Roles, ev.Patients = c.ID, c.Subject, c.FHIRUser, c.Roles, patients(c.Patient)
		return "access_token"
	}
	ctx := r.Context()
	store := &fositeStore{db: s.db, clients: s.clients, now: s.now}
	req, err := store.GetRefreshTokenSession(ctx, s.hmacs.RefreshTokenSignature(ctx, tok), nil)
	if err != nil || s.hmacs.ValidateRefreshToken(ctx, req, tok) != nil {
		return "unknown"
	}
	if sess, ok := req.GetSession().(*Session); ok {
		ev.Subject, ev.FHIRUser, ev.Roles, ev.Patients = sess.GetSubject(), sess.FHIRUser, sess.Roles, patients(sess.Patient)
	}
	return "refresh_token"
}

// userinfo is the OpenID Connect userinfo endpoint.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		s.preflight(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidRequest, Description: "Use GET or POST.", Status: http.StatusMethodNotAllowed})
		return
	}
	h := r.Header.Get("Authorization")
	if len(h) <= 7 || !strings.EqualFold(h[:7], "bearer ") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate"`)
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidToken, Description: "A Bearer access token is required.", Status: http.StatusUnauthorized})
		return
	}
	c, err := s.activeAccess(r, strings.TrimSpace(h[7:]))
	if err != nil || !strings.Contains(" "+c.Scope+" ", " openid ") || c.Subject == c.ClientID {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate", error="invalid_token"`)
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidToken, Description: "The access token is not valid for userinfo.", Status: http.StatusUnauthorized})
		return
	}
	out := map[string]any{"sub": c.Subject}
	if c.FHIRUser != "" && strings.Contains(" "+c.Scope+" ", " fhirUser ") {
		out["fhirUser"] = s.absoluteFHIRUser(c.FHIRUser)
	}
	if strings.Contains(" "+c.Scope+" ", " profile ") {
		out["preferred_username"] = c.Subject
	}
	oauth.WriteJSON(w, http.StatusOK, out)
}
