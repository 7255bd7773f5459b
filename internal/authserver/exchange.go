package authserver

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// breakGlassExchange is the RFC 8693 token-exchange grant, for one purpose only: an app holding a
// clinician's access token trades it for an emergency access (break-glass) token of the same user,
// client, patient context and at most the same scopes (docs/access-control.md §3.12). fosite
// v0.49.0 has no token-exchange handler, so this is one: client authentication, the access-token
// strategy and storage are fosite's and fhirgate's as for every other grant. The token endpoint
// (token.go) opens the review item and raises the alert once every check here and the
// certificate binding passed; PopulateTokenEndpointResponse refuses to mint without it.
type breakGlassExchange struct {
	*oauth2.HandleHelper
	s *Server
}

var _ fosite.TokenEndpointHandler = (*breakGlassExchange)(nil)

// CanSkipClientAuth implements fosite.TokenEndpointHandler: the client always identifies itself
// (a public client by client_id), and only the subject token's client may exchange it.
func (h *breakGlassExchange) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// CanHandleTokenEndpointRequest implements fosite.TokenEndpointHandler.
func (h *breakGlassExchange) CanHandleTokenEndpointRequest(_ context.Context, ar fosite.AccessRequester) bool {
	return ar.GetGrantTypes().ExactOne(oauth.GrantTokenExchange)
}

// badSubject is the refusal of a subject token. RFC 8693 2.2.2: "If the request itself is not
// valid or if either the subject_token or actor_token are invalid for any reason, or are
// unacceptable based on policy, [...] The value of the error parameter MUST be the
// invalid_request error code."
func badSubject(hint string) *fosite.RFC6749Error { return fosite.ErrInvalidRequest.WithHint(hint) }

// HandleTokenEndpointRequest implements fosite.TokenEndpointHandler: it checks the request and
// the subject token and fills the session and granted scopes of the emergency grant.
func (h *breakGlassExchange) HandleTokenEndpointRequest(ctx context.Context, ar fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	s := h.s
	if !s.cfg.Security.breakGlassEnabled() {
		return fosite.ErrUnsupportedGrantType.WithHint("Token exchange is not enabled.")
	}
	client := ar.GetClient()
	if !client.GetGrantTypes().Has(oauth.GrantTokenExchange) {
		return fosite.ErrUnauthorizedClient.WithHint("The client is not registered for the token-exchange grant.")
	}
	f := ar.GetRequestForm()
	switch {
	case f.Get("subject_token") == "":
		return fosite.ErrInvalidRequest.WithHint("subject_token is required.")
	case f.Get("subject_token_type") != oauth.TokenTypeAccessToken:
		return fosite.ErrInvalidRequest.WithHint("subject_token_type must be " + oauth.TokenTypeAccessToken + ".")
	case f.Has("actor_token") || f.Has("actor_token_type"):
		return fosite.ErrInvalidRequest.WithHint("Delegation (actor_token) is not supported.")
	case f.Has("requested_token_type") && f.Get("requested_token_type") != oauth.TokenTypeAccessToken:
		return fosite.ErrInvalidRequest.WithHint("Only an access token can be issued.")
	}
	for _, t := range append(slices.Clone(f["resource"]), f["audience"]...) {
		if strings.TrimRight(t, "/") != s.fhirBase {
			// RFC 8693 2.2.2: "If the authorization server is unwilling or unable to issue a
			// token for any target service indicated by the resource or audience parameters, the
			// invalid_target error code SHOULD be used".
			return &fosite.RFC6749Error{ErrorField: oauth.InvalidTarget, CodeField: http.StatusBadRequest,
				DescriptionField: "The only target is this server's FHIR base URL."}
		}
	}
	// This exchange grants emergency access and nothing else.
	if p := strings.Fields(strings.Join(f[ParamPurposeOfUse], " ")); !slices.Equal(p, []string{authn.PurposeBreakGlass}) {
		return fosite.ErrInvalidRequest.WithHint("Token exchange grants emergency access only: purpose_of_use must be BTG.")
	}
	if reason := strings.TrimSpace(f.Get(ParamBreakGlassReason)); reason == "" || len(reason) > maxBreakGlassReason {
		return fosite.ErrInvalidRequest.WithHint("Emergency access needs a written reason (break_glass_reason, at most 1024 bytes).")
	}

	claims, err := s.minter.VerifyAccess(f.Get("subject_token"))
	if err != nil {
		// Expired, signed by another issuer, a refresh token or an ID token: all the same here.
		return badSubject("The subject token is not an active access token of this server.").WithWrap(err)
	}
	if revoked, err := s.db.Revoked(ctx, claims.ID); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	} else if revoked {
		return badSubject("The subject token is not an active access token of this server.")
	}
	// The stored grant is the authority on what the token carries; a revoked grant has none.
	stored, err := h.AccessTokenStorage.GetAccessTokenSession(ctx, claims.ID, newSession())
	if errors.Is(err, fosite.ErrNotFound) {
		return badSubject("The subject token is not an active access token of this server.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	sub, ok := stored.GetSession().(*Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected stored session")
	}
	if stored.GetClient().GetID() != client.GetID() || claims.ClientID != client.GetID() {
		return badSubject("The subject token was issued to another client.")
	}
	if sub.Username == "" {
		return badSubject("The subject token does not act for a user.")
	}
	// No chaining: a break-glass token cannot be exchanged for a fresh one to outlive its TTL.
	if sub.BreakGlass != nil || claims.BreakGlass != nil || slices.Contains(sub.PurposeOfUse, authn.PurposeBreakGlass) {
		return badSubject("The subject token is already an emergency access token.")
	}
	// Both the roles the token was issued under and the user's roles now must allow it, so a
	// role withdrawn since the token was issued is honoured.
	u, err := s.users.Get(ctx, sub.Username)
	if errors.Is(err, ErrNotFound) {
		return badSubject("The subject token's account is no longer available.")
	}
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if u.IsPatient() || !s.cfg.Security.mayBreakGlass(u.Roles) || !s.cfg.Security.mayBreakGlass(sub.Roles) {
		return badSubject("The user's role does not allow emergency access.")
	}

	// Scopes: the subject token's, or a subset named by scope; never more. A break-glass
	// grant is short-lived: no offline_access or online_access, so no refresh token.
	granted, _ := smart.ParseScopes(strings.Join(stored.GetGrantedScopes(), " "))
	if raw := f.Get("scope"); raw != "" {
		want, dropped := smart.ParseScopes(raw)
		if len(dropped) > 0 {
			return fosite.ErrInvalidScope.WithHint("The scope contains unknown values.")
		}
		for _, sc := range want {
			if !granted.Covers(sc) {
				return fosite.ErrInvalidScope.WithHint("The requested scope exceeds the subject token's scope.")
			}
		}
		granted = want
	}
	n := 0
	for _, sc := range granted {
		if sc.Kind != smart.KindOfflineAccess && sc.Kind != smart.KindOnlineAccess {
			ar.GrantScope(sc.Echo())
			n++
		}
	}
	if n == 0 {
		return fosite.ErrInvalidScope.WithHint("No scope left to grant.")
	}
	ar.GrantAudience(s.fhirBase)

	sess, ok := ar.GetSession().(*Session)
	if !ok {
		return fosite.ErrServerError.WithDebug("unexpected session")
	}
	// The user, patient and launch context are the subject token's: break-glass never changes
	// whose record is open. The certificate binding carries over (token.go checks that this
	// connection presents the same certificate).
	*sess = Session{
		Username: sub.Username, ClientID: client.GetID(), FHIRUser: sub.FHIRUser, Roles: sub.Roles, SID: sub.SID,
		AuthTime: sub.AuthTime, Patient: sub.Patient, Encounter: sub.Encounter, FHIRContext: sub.FHIRContext,
		NeedPatientBanner: sub.NeedPatientBanner, StyleURL: sub.StyleURL, CertThumbprint: sub.CertThumbprint,
	}
	return nil
}

// PopulateTokenEndpointResponse implements fosite.TokenEndpointHandler: it mints the access token
// of the emergency grant, never a refresh token.
func (h *breakGlassExchange) PopulateTokenEndpointResponse(ctx context.Context, ar fosite.AccessRequester, resp fosite.AccessResponder) error {
	if !h.CanHandleTokenEndpointRequest(ctx, ar) {
		return fosite.ErrUnknownRequest
	}
	sess, ok := ar.GetSession().(*Session)
	if !ok || sess.BreakGlass == nil || sess.BreakGlass.Review == "" {
		// Fail closed: no emergency token without its review item.
		return fosite.ErrServerError.WithDebug("break-glass exchange without a review item")
	}
	if _, err := h.IssueAccessToken(ctx, sess.AccessTTL, ar, resp); err != nil {
		return err
	}
	// RFC 8693 2.2.1: issued_token_type is REQUIRED.
	resp.SetExtra("issued_token_type", oauth.TokenTypeAccessToken)
	return nil
}
