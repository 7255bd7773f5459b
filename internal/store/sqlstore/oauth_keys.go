package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// OAuthKey is a stored signing key or secret. PrivateEnc is encrypted by the keys package; the
// store never sees key material in the clear.
type OAuthKey struct {
	KID         string
	Purpose     string
	Alg         string
	PrivateEnc  []byte
	PublicJWK   []byte
	CreatedAt   time.Time
	ActivatesAt time.Time
	// RetiredAt is zero while the key is current.
	RetiredAt time.Time
}

// PutOAuthKey stores a new key.
func (s *Store) PutOAuthKey(ctx context.Context, k OAuthKey) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO oauth_keys (kid, purpose, alg, private_enc, public_jwk, created_at, activates_at, retired_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`,
		k.KID, k.Purpose, k.Alg, k.PrivateEnc, string(k.PublicJWK), k.CreatedAt.Unix(), k.ActivatesAt.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: put key: %w", err)
	}
	return nil
}

// RetireOAuthKeys marks every current key of purpose except keep as retired at now.
func (s *Store) RetireOAuthKeys(ctx context.Context, purpose, keep string, now time.Time) error {
	_, err := s.write.ExecContext(ctx, `UPDATE oauth_keys SET retired_at = $1 WHERE purpose = $2 AND kid <> $3 AND retired_at IS NULL`, now.Unix(), purpose, keep)
	if err != nil {
		return fmt.Errorf("sqlstore: retire keys: %w", err)
	}
	return nil
}

// DeleteOAuthKeysRetiredBefore removes keys retired before t (no longer published).
func (s *Store) DeleteOAuthKeysRetiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM oauth_keys WHERE retired_at IS NOT NULL AND retired_at < $1`, t.Unix())
	if err != nil {
		return fmt.Errorf("sqlstore: delete keys: %w", err)
	}
	return nil
}

// ListOAuthKeys returns every key, oldest first.
func (s *Store) ListOAuthKeys(ctx context.Context) ([]OAuthKey, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT kid, purpose, alg, private_enc, public_jwk, created_at, activates_at, COALESCE(retired_at, 0) FROM oauth_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list keys: %w", err)
	}
	defer rows.Close()
	var out []OAuthKey
	for rows.Next() {
		var k OAuthKey
		var pub string
		var c, a, r int64
		if err := rows.Scan(&k.KID, &k.Purpose, &k.Alg, &k.PrivateEnc, &pub, &c, &a, &r); err != nil {
			return nil, fmt.Errorf("sqlstore: list keys: %w", err)
		}
		k.PublicJWK = []byte(pub)
		k.CreatedAt = time.Unix(c, 0).UTC()
		k.ActivatesAt = time.Unix(a, 0).UTC()
		if r != 0 {
			k.RetiredAt = time.Unix(r, 0).UTC()
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
