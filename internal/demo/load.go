package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// loadBatch is how many resources Load writes in one transaction: one commit per resource would
// make SQLite sync to disk thousands of times.
const loadBatch = 500

type pending struct {
	typ, id string
	body    []byte
}

// Load generates the data set and writes it through b with Update (PUT with the generated ids, so
// that every resource is created with its id, and loading again makes new versions rather than
// duplicates). Writes are grouped in transactions of a few hundred resources. The Summary counts
// what was written.
func Load(ctx context.Context, b backend.Backend, opts Options) (Summary, error) {
	var (
		sum   Summary
		batch []pending
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := b.InTx(ctx, func(tx backend.Backend) error {
			for _, p := range batch {
				if _, _, err := tx.Update(ctx, p.typ, p.id, p.body, backend.UpdateOptions{}); err != nil {
					return fmt.Errorf("demo: write %s/%s: %w", p.typ, p.id, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range batch {
			sum.add(p.typ, false)
		}
		batch = batch[:0]
		return nil
	}
	gen, err := Generate(opts, func(typ, id string, body []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch = append(batch, pending{typ, id, body})
		if len(batch) >= loadBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return sum, err
	}
	gen.Resources, gen.Total = sum.Resources, sum.Total
	return gen, nil
}

// Present reports whether the demo data set is already in b (Patient/example-alice exists), so
// that a server started with --demo twice on one store does not load it again.
func Present(ctx context.Context, b backend.Backend) (bool, error) {
	_, err := b.Read(ctx, "Patient", AlicePatientID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fhir.ErrNotFound), errors.Is(err, fhir.ErrGone):
		return false, nil
	default:
		return false, fmt.Errorf("demo: look for Patient/%s: %w", AlicePatientID, err)
	}
}
