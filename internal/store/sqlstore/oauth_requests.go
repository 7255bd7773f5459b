package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OAuthRequest is one stored grant record: an authorization code, access token, refresh token,
// PKCE or OpenID Connect session, keyed by kind and signature.
type OAuthRequest struct {
	Kind      string
	Signature string
	RequestID string
	ClientID  string
	// Subject is the username for grants made on behalf of a user, empty otherwise.
	Subject   string
	Active    bool
	ExpiresAt time.Time
	// Data is the serialized request (JSON), opaque to the store.
	Data []byte
}

// The kinds of OAuthRequest.
const (
	KindCode    = "code"
	KindAccess  = "access"
	KindRefresh = "refresh"
	KindPKCE    = "pkce"
	KindOIDC    = "oidc"
)

// CreateOAuthRequest stores a new record.
func (s *Store) CreateOAuthRequest(ctx context.Context, r OAuthRequest) error {
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_requests (kind, signature, request_id, client_id, subject, active, expires_at, data)
		VALUES ($1, $2, $3, $4, $5, 1, $6, $7)`,
		r.Kind, r.Signature, r.RequestID, r.ClientID, r.Subject, r.ExpiresAt.Unix(), string(r.Data))
	if err != nil {
		return fmt.Errorf("sqlstore: create %s: %w", r.Kind, err)
	}
	return nil
}

// GetOAuthRequest returns a record whether active or not; ErrOAuthNotFound when absent.
func (s *Store) GetOAuthRequest(ctx context.Context, kind, signature string) (OAuthRequest, error) {
	r := OAuthRequest{Kind: kind, Signature: signature}
	var active, exp int64
	var data string
	err := s.rq(ctx).QueryRowContext(ctx, `SELECT request_id, client_id, subject, active, expires_at, data FROM oauth_requests WHERE kind = $1 AND signature = $2`, kind, signature).
		Scan(&r.RequestID, &r.ClientID, &r.Subject, &active, &exp, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("%s: %w", kind, ErrOAuthNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("sqlstore: get %s: %w", kind, err)
	}
	r.Active = active == 1
	r.ExpiresAt = time.Unix(exp, 0).UTC()
	r.Data = []byte(data)
	return r, nil
}

// DeactivateOAuthRequest marks an active record inactive, atomically: of two concurrent callers
// exactly one succeeds, the other gets ErrOAuthInactive. This is what makes codes single-use and
// refresh rotation race-free.
func (s *Store) DeactivateOAuthRequest(ctx context.Context, kind, signature string) error {
	res, err := s.wq(ctx).ExecContext(ctx, `UPDATE oauth_requests SET active = 0 WHERE kind = $1 AND signature = $2 AND active = 1`, kind, signature)
	if err != nil {
		return fmt.Errorf("sqlstore: deactivate %s: %w", kind, err)
	}
	if affected(res) == 1 {
		return nil
	}
	if _, err := s.GetOAuthRequest(ctx, kind, signature); err != nil {
		return err
	}
	return fmt.Errorf("%s: %w", kind, ErrOAuthInactive)
}

// DeleteOAuthRequest removes a record. Deleting an access-token record revokes its jti (the
// signature of an access token is its jti) until the token's expiry.
func (s *Store) DeleteOAuthRequest(ctx context.Context, kind, signature string) error {
	q := s.wq(ctx)
	if kind == KindAccess {
		if err := revokeAccessWhere(ctx, q, `signature = $1`, signature); err != nil {
			return err
		}
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM oauth_requests WHERE kind = $1 AND signature = $2`, kind, signature); err != nil {
		return fmt.Errorf("sqlstore: delete %s: %w", kind, err)
	}
	if kind == KindAccess {
		s.revocationCommitted(ctx)
	}
	return nil
}

// DeactivateOAuthRequestsByRequestID marks every record of kind belonging to one grant inactive.
func (s *Store) DeactivateOAuthRequestsByRequestID(ctx context.Context, kind, requestID string) error {
	if _, err := s.wq(ctx).ExecContext(ctx, `UPDATE oauth_requests SET active = 0 WHERE kind = $1 AND request_id = $2`, kind, requestID); err != nil {
		return fmt.Errorf("sqlstore: deactivate %s grant: %w", kind, err)
	}
	return nil
}

// RevokeAccessByRequestID deletes every access-token record of one grant and adds their jtis to
// the revocation list.
func (s *Store) RevokeAccessByRequestID(ctx context.Context, requestID string) error {
	q := s.wq(ctx)
	if err := revokeAccessWhere(ctx, q, `request_id = $1`, requestID); err != nil {
		return err
	}
	if _, err := q.ExecContext(ctx, `DELETE FROM oauth_requests WHERE kind = 'access' AND request_id = $1`, requestID); err != nil {
		return fmt.Errorf("sqlstore: revoke access grant: %w", err)
	}
	s.revocationCommitted(ctx)
	return nil
}

// revokeAccessWhere copies the jtis (signatures) of the matching access-token records into the
// revocation list, with their expiry. cond uses $1 for arg.
func revokeAccessWhere(ctx context.Context, q queryer, cond string, arg any) error {
	_, err := q.ExecContext(ctx, `INSERT INTO oauth_revoked_jtis (jti, expires_at)
		SELECT signature, expires_at FROM oauth_requests WHERE kind = 'access' AND `+cond+`
		ON CONFLICT (jti) DO NOTHING`, arg)
	if err != nil {
		return fmt.Errorf("sqlstore: revoke access tokens: %w", err)
	}
	return nil
}

// RevokeJTI adds an access-token jti to the revocation list until exp.
func (s *Store) RevokeJTI(ctx context.Context, jti string, exp time.Time) error {
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_revoked_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING`, jti, exp.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: revoke jti: %w", err)
	}
	s.revocationCommitted(ctx)
	return nil
}

// Revoked reports whether the access token with this jti was revoked. The FHIR side asks it for
// every request, so it is one indexed lookup on the read pool.
func (s *Store) Revoked(ctx context.Context, jti string) (bool, error) {
	var one int
	err := s.read.QueryRowContext(ctx, `SELECT 1 FROM oauth_revoked_jtis WHERE jti = $1`, jti).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: revoked: %w", err)
	}
	return true, nil
}

// UseAssertionJTI records a client-assertion jti (key should include the client id) until exp.
// It returns ErrOAuthExists when the key was seen and has not expired at now: a replay.
func (s *Store) UseAssertionJTI(ctx context.Context, key string, exp, now time.Time) error {
	q := s.wq(ctx)
	if _, err := q.ExecContext(ctx, `DELETE FROM oauth_assertion_jtis WHERE jti = $1 AND expires_at < $2`, key, now.Unix()); err != nil {
		return fmt.Errorf("sqlstore: assertion jti: %w", err)
	}
	res, err := q.ExecContext(ctx, `INSERT INTO oauth_assertion_jtis (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING`, key, exp.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: assertion jti: %w", err)
	}
	if affected(res) == 0 {
		return fmt.Errorf("assertion jti: %w", ErrOAuthExists)
	}
	return nil
}

// OAuthLaunch is an EHR launch context.
type OAuthLaunch struct {
	// IDHash is the SHA-256 (hex) of the launch value given to the app.
	IDHash    string
	ClientID  string
	Patient   string
	Encounter string
	// FHIRContext is a JSON array.
	FHIRContext []byte
	CreatedBy   string
	ExpiresAt   time.Time
}

// CreateOAuthLaunch stores a launch context.
func (s *Store) CreateOAuthLaunch(ctx context.Context, l OAuthLaunch) error {
	fc := string(l.FHIRContext)
	if fc == "" {
		fc = "[]"
	}
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_launches (id_hash, client_id, patient, encounter, fhir_context, created_by, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, l.IDHash, l.ClientID, l.Patient, l.Encounter, fc, l.CreatedBy, l.ExpiresAt.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: create launch: %w", err)
	}
	return nil
}

// GetOAuthLaunch returns a live (unused, unexpired at now) launch bound to clientID, or
// ErrOAuthNotFound.
func (s *Store) GetOAuthLaunch(ctx context.Context, idHash, clientID string, now time.Time) (OAuthLaunch, error) {
	l := OAuthLaunch{IDHash: idHash}
	var fc string
	var exp int64
	err := s.rq(ctx).QueryRowContext(ctx, `SELECT client_id, patient, encounter, fhir_context, created_by, expires_at FROM oauth_launches
		WHERE id_hash = $1 AND client_id = $2 AND used = 0 AND expires_at >= $3`, idHash, clientID, now.Unix()).
		Scan(&l.ClientID, &l.Patient, &l.Encounter, &fc, &l.CreatedBy, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("launch: %w", ErrOAuthNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("sqlstore: get launch: %w", err)
	}
	l.FHIRContext = []byte(fc)
	l.ExpiresAt = time.Unix(exp, 0).UTC()
	return l, nil
}

// ConsumeOAuthLaunch marks a live launch used, atomically, and returns it. A second consumer gets
// ErrOAuthNotFound.
func (s *Store) ConsumeOAuthLaunch(ctx context.Context, idHash, clientID string, now time.Time) (OAuthLaunch, error) {
	var l OAuthLaunch
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var fc string
		var exp int64
		err := tx.QueryRowContext(ctx, `UPDATE oauth_launches SET used = 1
			WHERE id_hash = $1 AND client_id = $2 AND used = 0 AND expires_at >= $3
			RETURNING client_id, patient, encounter, fhir_context, created_by, expires_at`, idHash, clientID, now.Unix()).
			Scan(&l.ClientID, &l.Patient, &l.Encounter, &fc, &l.CreatedBy, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("launch: %w", ErrOAuthNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: consume launch: %w", err)
		}
		l.IDHash = idHash
		l.FHIRContext = []byte(fc)
		l.ExpiresAt = time.Unix(exp, 0).UTC()
		return nil
	})
	return l, err
}

// CreateBrowserSession stores a login session keyed by the hash of its cookie value.
func (s *Store) CreateBrowserSession(ctx context.Context, idHash, username string, now, exp time.Time) error {
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_browser_sessions (id_hash, username, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		idHash, username, now.Unix(), exp.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: create session: %w", err)
	}
	return nil
}

// GetBrowserSession returns the username of a live session.
func (s *Store) GetBrowserSession(ctx context.Context, idHash string, now time.Time) (username string, created time.Time, err error) {
	var c int64
	err = s.rq(ctx).QueryRowContext(ctx, `SELECT username, created_at FROM oauth_browser_sessions WHERE id_hash = $1 AND expires_at >= $2`, idHash, now.Unix()).Scan(&username, &c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, fmt.Errorf("session: %w", ErrOAuthNotFound)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sqlstore: get session: %w", err)
	}
	return username, time.Unix(c, 0).UTC(), nil
}

// DeleteBrowserSession ends a login session.
func (s *Store) DeleteBrowserSession(ctx context.Context, idHash string) error {
	if _, err := s.wq(ctx).ExecContext(ctx, `DELETE FROM oauth_browser_sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("sqlstore: delete session: %w", err)
	}
	return nil
}

// PutInteraction stores or replaces the state of an in-flight authorization.
func (s *Store) PutInteraction(ctx context.Context, id, browserHash string, data []byte, exp time.Time) error {
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_interactions (id, browser_hash, data, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at`, id, browserHash, string(data), exp.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: put interaction: %w", err)
	}
	return nil
}

// GetInteraction returns a live interaction's browser hash and state.
func (s *Store) GetInteraction(ctx context.Context, id string, now time.Time) (browserHash string, data []byte, err error) {
	var d string
	err = s.rq(ctx).QueryRowContext(ctx, `SELECT browser_hash, data FROM oauth_interactions WHERE id = $1 AND expires_at >= $2`, id, now.Unix()).Scan(&browserHash, &d)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, fmt.Errorf("interaction: %w", ErrOAuthNotFound)
	}
	if err != nil {
		return "", nil, fmt.Errorf("sqlstore: get interaction: %w", err)
	}
	return browserHash, []byte(d), nil
}

// DeleteInteraction removes an interaction; it returns ErrOAuthNotFound if it was already gone,
// so that finishing an authorization happens once.
func (s *Store) DeleteInteraction(ctx context.Context, id string) error {
	res, err := s.wq(ctx).ExecContext(ctx, `DELETE FROM oauth_interactions WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("sqlstore: delete interaction: %w", err)
	}
	if affected(res) == 0 {
		return fmt.Errorf("interaction: %w", ErrOAuthNotFound)
	}
	return nil
}

// ListActiveOAuthRequests returns the active access and refresh records of subject (a user's
// grants), newest first.
func (s *Store) ListActiveOAuthRequests(ctx context.Context, subject string, now time.Time) ([]OAuthRequest, error) {
	rows, err := s.rq(ctx).QueryContext(ctx, `SELECT kind, signature, request_id, client_id, subject, expires_at, data FROM oauth_requests
		WHERE subject = $1 AND kind IN ('access', 'refresh') AND active = 1 AND expires_at >= $2 ORDER BY expires_at DESC`, subject, now.Unix())
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list grants: %w", err)
	}
	defer rows.Close()
	var out []OAuthRequest
	for rows.Next() {
		r := OAuthRequest{Active: true}
		var exp int64
		var data string
		if err := rows.Scan(&r.Kind, &r.Signature, &r.RequestID, &r.ClientID, &r.Subject, &exp, &data); err != nil {
			return nil, fmt.Errorf("sqlstore: list grants: %w", err)
		}
		r.ExpiresAt = time.Unix(exp, 0).UTC()
		r.Data = []byte(data)
		out = append(out, r)
	}
	return out, rows.Err()
}

// RevokeOAuthGrant revokes every refresh and access token of one grant of subject. It returns
// ErrOAuthNotFound when subject has no record of that grant.
func (s *Store) RevokeOAuthGrant(ctx context.Context, requestID, subject string) error {
	defer s.afterRevokingTx(ctx)()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM oauth_requests WHERE request_id = $1 AND subject = $2`, requestID, subject).Scan(&n); err != nil {
			return fmt.Errorf("sqlstore: revoke grant: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("grant: %w", ErrOAuthNotFound)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE oauth_requests SET active = 0 WHERE kind = 'refresh' AND request_id = $1`, requestID); err != nil {
			return fmt.Errorf("sqlstore: revoke grant: %w", err)
		}
		if err := revokeAccessWhere(ctx, tx, `request_id = $1`, requestID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_requests WHERE kind = 'access' AND request_id = $1`, requestID); err != nil {
			return fmt.Errorf("sqlstore: revoke grant: %w", err)
		}
		return nil
	})
}
