package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// conditionalLockClass is the first key of the advisory locks that serialize conditional creates
// ("FHGC"); the migration lock uses the one-key form, a space of its own.
const conditionalLockClass = 0x46484743

// lockConditionalCreate makes a conditional create (If-None-Exist) decide alone. On SQLite the
// single writer does that already. On PostgreSQL two instances running the same conditional
// create at READ COMMITTED would both find no match and both create, and no unique index can
// stop them (the new resources have different ids); so the transaction first takes an advisory
// lock keyed by the criteria (type, clauses, compartment), held until it ends: the second waits,
// then its search sees the first one's resource. Different criteria hash to different keys (a
// collision only makes two creates wait for each other).
func (s *Store) lockConditionalCreate(ctx context.Context, tx *sql.Tx, typ string, q *search.Query) error {
	if s.dialect.name() != "postgres" {
		return nil
	}
	h := fnv.New32a()
	h.Write([]byte(typ))
	h.Write([]byte{0})
	criteria, err := json.Marshal(struct {
		Types       []string
		Compartment *search.CompartmentRef
		Clauses     []search.Clause
	}{q.Types, q.Compartment, q.Clauses})
	if err == nil {
		h.Write(criteria) // otherwise one lock per type: coarser, still correct
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, int32(conditionalLockClass), int32(h.Sum32())); err != nil { // #nosec G115 -- a hash reinterpreted as a lock key
		return fmt.Errorf("sqlstore: conditional create lock: %w", err)
	}
	return nil
}
