package authserver

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// namePublicRefreshClient lets a public client refresh without repeating its client_id.
//
// RFC 6749 §6 asks client authentication on a refresh only of confidential clients, and the SMART
// JavaScript client (fhirclient) sends a public client's refresh request as grant_type and
// refresh_token alone. fosite, though, wants a client_id on every token request. When a
// refresh_token grant carries no client identification at all (no client_id, no assertion, no
// Authorization header), the client id is taken from the stored grant of the presented refresh
// token, and only if that client is public: a confidential client still has to authenticate.
// Everything else (the token's HMAC, expiry, reuse detection) is checked by fosite as before.
func (s *Server) namePublicRefreshClient(r *http.Request) {
	f := r.PostForm
	if f.Get("grant_type") != oauth.GrantRefreshToken || f.Has("client_id") || f.Has("client_assertion") ||
		r.Header.Get("Authorization") != "" {
		return
	}
	tok := f.Get("refresh_token")
	if tok == "" {
		return
	}
	ctx := r.Context()
	rec, err := s.db.GetOAuthRequest(ctx, sqlstore.KindRefresh, s.hmacs.RefreshTokenSignature(ctx, tok))
	if err != nil {
		return
	}
	c, err := s.clients.Get(ctx, rec.ClientID)
	if err != nil || !c.IsPublic() {
		return
	}
	f.Set("client_id", rec.ClientID)
	if r.Form != nil {
		r.Form.Set("client_id", rec.ClientID)
	}
}
