package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// OAuthClient is a stored OAuth client registration.
type OAuthClient struct {
	ClientID string
	// Metadata is the RFC 7591 client metadata as JSON, never containing the secret.
	Metadata []byte
	// SecretHash is the SHA-256 digest of the client secret, nil when the client has none.
	SecretHash []byte
	// Source is config, admin or dynamic.
	Source    string
	CreatedAt time.Time
}

// PutOAuthClient inserts or replaces a client.
func (s *Store) PutOAuthClient(ctx context.Context, c OAuthClient) error {
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_clients (client_id, metadata, secret_hash, source, created_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata, secret_hash = excluded.secret_hash, source = excluded.source`,
		c.ClientID, string(c.Metadata), c.SecretHash, c.Source, c.CreatedAt.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: put client: %w", err)
	}
	return nil
}

// GetOAuthClient returns one client or ErrOAuthNotFound.
func (s *Store) GetOAuthClient(ctx context.Context, id string) (OAuthClient, error) {
	var c OAuthClient
	var meta string
	var created int64
	err := s.rq(ctx).QueryRowContext(ctx, `SELECT client_id, metadata, secret_hash, source, created_at FROM oauth_clients WHERE client_id = $1`, id).
		Scan(&c.ClientID, &meta, &c.SecretHash, &c.Source, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("client %q: %w", id, ErrOAuthNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("sqlstore: get client: %w", err)
	}
	c.Metadata = []byte(meta)
	c.CreatedAt = time.Unix(created, 0).UTC()
	return c, nil
}

// ListOAuthClients returns every client ordered by id.
func (s *Store) ListOAuthClients(ctx context.Context) ([]OAuthClient, error) {
	rows, err := s.rq(ctx).QueryContext(ctx, `SELECT client_id, metadata, secret_hash, source, created_at FROM oauth_clients ORDER BY client_id`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list clients: %w", err)
	}
	defer rows.Close()
	var out []OAuthClient
	for rows.Next() {
		var c OAuthClient
		var meta string
		var created int64
		if err := rows.Scan(&c.ClientID, &meta, &c.SecretHash, &c.Source, &created); err != nil {
			return nil, fmt.Errorf("sqlstore: list clients: %w", err)
		}
		c.Metadata = []byte(meta)
		c.CreatedAt = time.Unix(created, 0).UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteOAuthClient removes a client and every outstanding grant issued to it.
func (s *Store) DeleteOAuthClient(ctx context.Context, id string) error {
	defer s.afterRevokingTx(ctx)()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM oauth_clients WHERE client_id = $1`, id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete client: %w", err)
		}
		if affected(res) == 0 {
			return fmt.Errorf("client %q: %w", id, ErrOAuthNotFound)
		}
		if err := revokeAccessWhere(ctx, tx, `client_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_requests WHERE client_id = $1`, id); err != nil {
			return fmt.Errorf("sqlstore: delete client grants: %w", err)
		}
		return nil
	})
}

// OAuthUser is a stored local account.
type OAuthUser struct {
	Username string
	// PasswordHash is an argon2id PHC string.
	PasswordHash string
	FHIRUser     string
	// Roles is a JSON array of role names.
	Roles     []byte
	Source    string
	CreatedAt time.Time
}

// PutOAuthUser inserts or replaces a user.
func (s *Store) PutOAuthUser(ctx context.Context, u OAuthUser) error {
	roles := string(u.Roles)
	if roles == "" {
		roles = "[]"
	}
	_, err := s.wq(ctx).ExecContext(ctx, `INSERT INTO oauth_users (username, password_hash, fhir_user, roles, source, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, fhir_user = excluded.fhir_user,
			roles = excluded.roles, source = excluded.source`,
		u.Username, u.PasswordHash, u.FHIRUser, roles, u.Source, u.CreatedAt.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: put user: %w", err)
	}
	return nil
}

// GetOAuthUser returns one user or ErrOAuthNotFound.
func (s *Store) GetOAuthUser(ctx context.Context, username string) (OAuthUser, error) {
	var u OAuthUser
	var roles string
	var created int64
	err := s.rq(ctx).QueryRowContext(ctx, `SELECT username, password_hash, fhir_user, roles, source, created_at FROM oauth_users WHERE username = $1`, username).
		Scan(&u.Username, &u.PasswordHash, &u.FHIRUser, &roles, &u.Source, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user: %w", ErrOAuthNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("sqlstore: get user: %w", err)
	}
	u.Roles = []byte(roles)
	u.CreatedAt = time.Unix(created, 0).UTC()
	return u, nil
}

// ListOAuthUsers returns every user ordered by name.
func (s *Store) ListOAuthUsers(ctx context.Context) ([]OAuthUser, error) {
	rows, err := s.rq(ctx).QueryContext(ctx, `SELECT username, password_hash, fhir_user, roles, source, created_at FROM oauth_users ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list users: %w", err)
	}
	defer rows.Close()
	var out []OAuthUser
	for rows.Next() {
		var u OAuthUser
		var roles string
		var created int64
		if err := rows.Scan(&u.Username, &u.PasswordHash, &u.FHIRUser, &roles, &u.Source, &created); err != nil {
			return nil, fmt.Errorf("sqlstore: list users: %w", err)
		}
		u.Roles = []byte(roles)
		u.CreatedAt = time.Unix(created, 0).UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// DeleteOAuthUser removes a user, their browser sessions and every grant issued on their behalf.
func (s *Store) DeleteOAuthUser(ctx context.Context, username string) error {
	defer s.afterRevokingTx(ctx)()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM oauth_users WHERE username = $1`, username)
		if err != nil {
			return fmt.Errorf("sqlstore: delete user: %w", err)
		}
		if affected(res) == 0 {
			return fmt.Errorf("user: %w", ErrOAuthNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_browser_sessions WHERE username = $1`, username); err != nil {
			return fmt.Errorf("sqlstore: delete user sessions: %w", err)
		}
		if err := revokeAccessWhere(ctx, tx, `subject = $1`, username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM oauth_requests WHERE subject = $1`, username); err != nil {
			return fmt.Errorf("sqlstore: delete user grants: %w", err)
		}
		return nil
	})
}
