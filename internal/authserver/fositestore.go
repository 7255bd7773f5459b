package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	"github.com/ory/fosite/storage"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// fositeStore adapts the sqlstore OAuth tables to fosite's storage interfaces. It is the only
// place where fosite's request type is serialized; the database sees opaque JSON.
type fositeStore struct {
	db      *sqlstore.Store
	clients *Clients
	now     func() time.Time
}

var (
	_ fosite.Storage                     = (*fositeStore)(nil)
	_ oauth2.CoreStorage                 = (*fositeStore)(nil)
	_ oauth2.TokenRevocationStorage      = (*fositeStore)(nil)
	_ pkce.PKCERequestStorage            = (*fositeStore)(nil)
	_ openid.OpenIDConnectRequestStorage = (*fositeStore)(nil)
	_ storage.Transactional              = (*fositeStore)(nil)
)

// storedRequest is the JSON form of a fosite request.
type storedRequest struct {
	ID                string          `json:"id"`
	RequestedAt       time.Time       `json:"requested_at"`
	ClientID          string          `json:"client_id"`
	RequestedScope    []string        `json:"requested_scope"`
	GrantedScope      []string        `json:"granted_scope"`
	RequestedAudience []string        `json:"requested_audience,omitempty"`
	GrantedAudience   []string        `json:"granted_audience,omitempty"`
	Form              url.Values      `json:"form,omitempty"`
	Session           json.RawMessage `json:"session"`
}

func (f *fositeStore) BeginTX(ctx context.Context) (context.Context, error) {
	return f.db.BeginOAuthTx(ctx)
}
func (f *fositeStore) Commit(ctx context.Context) error   { return f.db.CommitOAuthTx(ctx) }
func (f *fositeStore) Rollback(ctx context.Context) error { return f.db.RollbackOAuthTx(ctx) }

// GetClient implements fosite.ClientManager.
func (f *fositeStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	c, err := f.clients.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound.WithWrap(err)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ClientAssertionJWTValid and SetClientAssertionJWT are not used: fhirgate authenticates clients
// itself (clientauth.go) and keeps jtis per client there. They fail closed if ever called.
func (f *fositeStore) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	return fosite.ErrJTIKnown.WithHint("client assertions are checked by fhirgate's client authentication")
}

// SetClientAssertionJWT: see ClientAssertionJWTValid.
func (f *fositeStore) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	return fosite.ErrJTIKnown.WithHint("client assertions are checked by fhirgate's client authentication")
}

func (f *fositeStore) create(ctx context.Context, kind, signature string, r fosite.Requester, expKey fosite.TokenType) error {
	sess, _ := r.GetSession().(*Session)
	if sess == nil {
		return fmt.Errorf("authserver: unexpected session type %T", r.GetSession())
	}
	sdata, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	data, err := json.Marshal(storedRequest{
		ID: r.GetID(), RequestedAt: r.GetRequestedAt(), ClientID: r.GetClient().GetID(),
		RequestedScope: r.GetRequestedScopes(), GrantedScope: r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(), GrantedAudience: r.GetGrantedAudience(),
		Form: r.GetRequestForm(), Session: sdata,
	})
	if err != nil {
		return err
	}
	exp := sess.GetExpiresAt(expKey)
	if exp.IsZero() {
		// Records without their own expiry (PKCE and OIDC sessions follow the code; a refresh
		// token without lifespan) are kept a year at most.
		exp = f.now().Add(365 * 24 * time.Hour)
	}
	return f.db.CreateOAuthRequest(ctx, sqlstore.OAuthRequest{
		Kind: kind, Signature: signature, RequestID: r.GetID(), ClientID: r.GetClient().GetID(),
		Subject: sess.Username, ExpiresAt: exp, Data: data,
	})
}

// get loads a record; inactive records come back with fosite's "inactive" error for the kind,
// together with the request (fosite needs it to revoke what a replayed code or refresh token issued).
func (f *fositeStore) get(ctx context.Context, kind, signature string, into fosite.Session) (fosite.Requester, error) {
	rec, err := f.db.GetOAuthRequest(ctx, kind, signature)
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var sr storedRequest
	if err := json.Unmarshal(rec.Data, &sr); err != nil {
		return nil, fmt.Errorf("authserver: stored %s: %w", kind, err)
	}
	sess, _ := into.(*Session)
	if sess == nil {
		sess = newSession()
	}
	if err := json.Unmarshal(sr.Session, sess); err != nil {
		return nil, fmt.Errorf("authserver: stored session: %w", err)
	}
	client, err := f.GetClient(ctx, sr.ClientID)
	if err != nil {
		// The client was removed: its grants are gone with it.
		return nil, fosite.ErrNotFound
	}
	req := &fosite.Request{
		ID: sr.ID, RequestedAt: sr.RequestedAt, Client: client,
		RequestedScope: sr.RequestedScope, GrantedScope: sr.GrantedScope,
		RequestedAudience: sr.RequestedAudience, GrantedAudience: sr.GrantedAudience,
		Form: sr.Form, Session: sess,
	}
	if req.Form == nil {
		req.Form = url.Values{}
	}
	if !rec.Active {
		switch kind {
		case sqlstore.KindCode:
			return req, fosite.ErrInvalidatedAuthorizeCode
		case sqlstore.KindRefresh:
			return req, fosite.ErrInactiveToken
		default:
			return nil, fosite.ErrNotFound
		}
	}
	return req, nil
}

func (f *fositeStore) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return f.create(ctx, sqlstore.KindCode, code, r, fosite.AuthorizeCode)
}

func (f *fositeStore) GetAuthorizeCodeSession(ctx context.Context, code string, s fosite.Session) (fosite.Requester, error) {
	return f.get(ctx, sqlstore.KindCode, code, s)
}

// InvalidateAuthorizeCodeSession marks the code used. Of two concurrent exchanges only one can
// succeed here; the other fails.
func (f *fositeStore) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	err := f.db.DeactivateOAuthRequest(ctx, sqlstore.KindCode, code)
	if errors.Is(err, sqlstore.ErrOAuthInactive) {
		return fosite.ErrInvalidatedAuthorizeCode
	}
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		return fosite.ErrNotFound
	}
	return err
}

func (f *fositeStore) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return f.create(ctx, sqlstore.KindAccess, signature, r, fosite.AccessToken)
}

func (f *fositeStore) GetAccessTokenSession(ctx context.Context, signature string, s fosite.Session) (fosite.Requester, error) {
	return f.get(ctx, sqlstore.KindAccess, signature, s)
}

func (f *fositeStore) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return f.db.DeleteOAuthRequest(ctx, sqlstore.KindAccess, signature)
}

func (f *fositeStore) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, r fosite.Requester) error {
	return f.create(ctx, sqlstore.KindRefresh, signature, r, fosite.RefreshToken)
}

func (f *fositeStore) GetRefreshTokenSession(ctx context.Context, signature string, s fosite.Session) (fosite.Requester, error) {
	return f.get(ctx, sqlstore.KindRefresh, signature, s)
}

func (f *fositeStore) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return f.db.DeleteOAuthRequest(ctx, sqlstore.KindRefresh, signature)
}

// RotateRefreshToken retires the presented refresh token (kept, inactive, so that a later reuse
// is detected) and revokes the access tokens of the grant. The deactivation is conditional, so
// two concurrent refreshes with the same token cannot both rotate it.
func (f *fositeStore) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	if err := f.db.DeactivateOAuthRequest(ctx, sqlstore.KindRefresh, signature); err != nil {
		if errors.Is(err, sqlstore.ErrOAuthInactive) || errors.Is(err, sqlstore.ErrOAuthNotFound) {
			return fosite.ErrInactiveToken
		}
		return err
	}
	return f.db.RevokeAccessByRequestID(ctx, requestID)
}

func (f *fositeStore) RevokeRefreshToken(ctx context.Context, requestID string) error {
	return f.db.DeactivateOAuthRequestsByRequestID(ctx, sqlstore.KindRefresh, requestID)
}

func (f *fositeStore) RevokeAccessToken(ctx context.Context, requestID string) error {
	return f.db.RevokeAccessByRequestID(ctx, requestID)
}

func (f *fositeStore) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return f.create(ctx, sqlstore.KindPKCE, signature, r, fosite.AuthorizeCode)
}

func (f *fositeStore) GetPKCERequestSession(ctx context.Context, signature string, s fosite.Session) (fosite.Requester, error) {
	return f.get(ctx, sqlstore.KindPKCE, signature, s)
}

func (f *fositeStore) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return f.db.DeleteOAuthRequest(ctx, sqlstore.KindPKCE, signature)
}

func (f *fositeStore) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return f.create(ctx, sqlstore.KindOIDC, code, r, fosite.AuthorizeCode)
}

func (f *fositeStore) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	req, err := f.get(ctx, sqlstore.KindOIDC, code, nil)
	if errors.Is(err, fosite.ErrNotFound) {
		return nil, openid.ErrNoSessionFound
	}
	return req, err
}

func (f *fositeStore) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return f.db.DeleteOAuthRequest(ctx, sqlstore.KindOIDC, code)
}
