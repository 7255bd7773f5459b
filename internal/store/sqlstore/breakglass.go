package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Break-glass review statuses and decisions.
const (
	BreakGlassOpen        = "open"
	BreakGlassClosed      = "closed"
	DecisionJustified     = "justified"
	DecisionUnjustified   = "unjustified"
	maxBreakGlassListSize = 1000
)

// ErrBreakGlassNotFound is returned for an unknown review item; ErrBreakGlassClosed when it was
// already closed.
var (
	ErrBreakGlassNotFound = errors.New("sqlstore: break-glass review item not found")
	ErrBreakGlassClosed   = errors.New("sqlstore: break-glass review item already closed")
)

// BreakGlass is one emergency access grant in the review queue.
type BreakGlass struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Username  string    `json:"username"`
	FHIRUser  string    `json:"fhir_user,omitempty"`
	ClientID  string    `json:"client_id"`
	Patient   string    `json:"patient,omitempty"`
	Reason    string    `json:"reason"`
	Status    string    `json:"status"`
	Decision  string    `json:"decision,omitempty"`
	Reviewer  string    `json:"reviewer,omitempty"`
	Note      string    `json:"note,omitempty"`
	ClosedAt  time.Time `json:"closed_at,omitzero"`
}

// PutBreakGlass adds an item to the review queue.
func (s *Store) PutBreakGlass(ctx context.Context, b BreakGlass) error {
	_, err := s.write.ExecContext(ctx, `INSERT INTO break_glass_reviews (id, created_at, username, fhir_user, client_id, patient, reason, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		b.ID, b.CreatedAt.Unix(), b.Username, b.FHIRUser, b.ClientID, b.Patient, b.Reason, BreakGlassOpen)
	if err != nil {
		return fmt.Errorf("sqlstore: put break-glass item: %w", err)
	}
	return nil
}

// ListBreakGlass returns the items with the status (every status when empty), oldest first, at
// most limit (1000 when limit is not positive or larger).
func (s *Store) ListBreakGlass(ctx context.Context, status string, limit int) ([]BreakGlass, error) {
	if limit <= 0 || limit > maxBreakGlassListSize {
		limit = maxBreakGlassListSize
	}
	const cols = `SELECT id, created_at, username, fhir_user, client_id, patient, reason, status, decision, reviewer, note, closed_at FROM break_glass_reviews`
	var rows *sql.Rows
	var err error
	if status == "" {
		rows, err = s.read.QueryContext(ctx, cols+` ORDER BY created_at, id LIMIT $1`, limit)
	} else {
		rows, err = s.read.QueryContext(ctx, cols+` WHERE status = $1 ORDER BY created_at, id LIMIT $2`, status, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list break-glass items: %w", err)
	}
	defer rows.Close()
	var out []BreakGlass
	for rows.Next() {
		b, err := scanBreakGlass(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// GetBreakGlass returns one item.
func (s *Store) GetBreakGlass(ctx context.Context, id string) (BreakGlass, error) {
	row := s.read.QueryRowContext(ctx, `SELECT id, created_at, username, fhir_user, client_id, patient, reason, status, decision, reviewer, note, closed_at
		FROM break_glass_reviews WHERE id = $1`, id)
	b, err := scanBreakGlass(row)
	if errors.Is(err, sql.ErrNoRows) {
		return BreakGlass{}, ErrBreakGlassNotFound
	}
	return b, err
}

// CloseBreakGlass closes an open item with the reviewer's decision. Closing twice fails with
// ErrBreakGlassClosed: a decision is never overwritten.
func (s *Store) CloseBreakGlass(ctx context.Context, id, decision, reviewer, note string, at time.Time) error {
	if decision != DecisionJustified && decision != DecisionUnjustified {
		return fmt.Errorf("sqlstore: break-glass decision %q", decision)
	}
	res, err := s.write.ExecContext(ctx, `UPDATE break_glass_reviews SET status = $1, decision = $2, reviewer = $3, note = $4, closed_at = $5
		WHERE id = $6 AND status = $7`, BreakGlassClosed, decision, reviewer, note, at.Unix(), id, BreakGlassOpen)
	if err != nil {
		return fmt.Errorf("sqlstore: close break-glass item: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: close break-glass item: %w", err)
	}
	if n == 1 {
		return nil
	}
	if _, err := s.GetBreakGlass(ctx, id); err != nil {
		return err
	}
	return ErrBreakGlassClosed
}

type rowScanner interface{ Scan(dest ...any) error }

func scanBreakGlass(r rowScanner) (BreakGlass, error) {
	var b BreakGlass
	var created, closed int64
	if err := r.Scan(&b.ID, &created, &b.Username, &b.FHIRUser, &b.ClientID, &b.Patient, &b.Reason, &b.Status, &b.Decision, &b.Reviewer, &b.Note, &closed); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return b, err
		}
		return b, fmt.Errorf("sqlstore: scan break-glass item: %w", err)
	}
	b.CreatedAt = time.Unix(created, 0).UTC()
	if closed != 0 {
		b.ClosedAt = time.Unix(closed, 0).UTC()
	}
	return b, nil
}
