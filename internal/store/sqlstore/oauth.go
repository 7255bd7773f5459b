package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The authorization-server tables (migration 00010) are reached through the methods in the
// oauth*.go files. They speak in plain records: the protocol library's types never reach the
// database layer, so the library can be replaced without a migration of this package's API.

// Sentinel errors of the OAuth tables. Callers match them with errors.Is.
var (
	// ErrOAuthNotFound means no row matched.
	ErrOAuthNotFound = errors.New("sqlstore: not found")
	// ErrOAuthInactive means the row exists but was already deactivated (a used code, a rotated
	// refresh token, a consumed launch).
	ErrOAuthInactive = errors.New("sqlstore: inactive")
	// ErrOAuthExists means a row with that key exists already (a replayed assertion jti).
	ErrOAuthExists = errors.New("sqlstore: already exists")
)

// txKey carries an OAuth transaction in a context (fosite's storage.Transactional contract).
type txKey struct{}

// BeginOAuthTx starts a write transaction and returns a context carrying it; every OAuth method
// given that context runs inside it. Finish with CommitOAuthTx or RollbackOAuthTx.
func (s *Store) BeginOAuthTx(ctx context.Context) (context.Context, error) {
	if _, ok := ctx.Value(txKey{}).(*sql.Tx); ok {
		return ctx, errors.New("sqlstore: nested OAuth transaction")
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return ctx, fmt.Errorf("sqlstore: begin: %w", err)
	}
	return context.WithValue(ctx, txKey{}, tx), nil
}

// CommitOAuthTx commits the transaction carried by ctx.
func (s *Store) CommitOAuthTx(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	if !ok {
		return errors.New("sqlstore: no OAuth transaction in context")
	}
	if err := tx.Commit(); err != nil {
		s.txEnded(tx, false)
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	s.txEnded(tx, true)
	return nil
}

// RollbackOAuthTx rolls back the transaction carried by ctx.
func (s *Store) RollbackOAuthTx(ctx context.Context) error {
	tx, ok := ctx.Value(txKey{}).(*sql.Tx)
	if !ok {
		return errors.New("sqlstore: no OAuth transaction in context")
	}
	s.txEnded(tx, false)
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("sqlstore: rollback: %w", err)
	}
	return nil
}

// wq is the queryer for writes: the context's transaction or the write pool.
func (s *Store) wq(ctx context.Context) queryer {
	if tx, ok := ctx.Value(txKey{}).(*sql.Tx); ok {
		return tx
	}
	return s.write
}

// rq is the queryer for reads: the context's transaction (to see its own writes) or the read pool.
func (s *Store) rq(ctx context.Context) queryer {
	if tx, ok := ctx.Value(txKey{}).(*sql.Tx); ok {
		return tx
	}
	return s.read
}

// CleanupOAuth deletes rows that expired before now minus grace: old requests, seen assertion
// jtis, revoked jtis past their token's expiry, launches, sessions and interactions. It returns
// how many rows went.
func (s *Store) CleanupOAuth(ctx context.Context, now time.Time, grace time.Duration) (int64, error) {
	cut := now.Add(-grace).Unix()
	var total int64
	for _, table := range []string{"oauth_requests", "oauth_assertion_jtis", "oauth_revoked_jtis", "oauth_launches", "oauth_browser_sessions", "oauth_interactions"} {
		// The revoked-jti list must outlive the tokens it revokes, so no grace there: a row goes
		// only once its token has expired.
		c := cut
		if table == "oauth_revoked_jtis" || table == "oauth_assertion_jtis" {
			c = now.Unix()
		}
		res, err := s.write.ExecContext(ctx, "DELETE FROM "+table+" WHERE expires_at < $1", c)
		if err != nil {
			return total, fmt.Errorf("sqlstore: cleanup %s: %w", table, err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

func affected(res sql.Result) int64 {
	n, err := res.RowsAffected()
	if err != nil {
		return 0
	}
	return n
}
