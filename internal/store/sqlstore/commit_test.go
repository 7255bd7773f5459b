package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Concurrent writes are committed in groups; one that fails must not take its neighbours down
// with it, and every write acknowledged must be there.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	const writers = 40
	var wg sync.WaitGroup
	errs := make([]error, writers)
	ids := make([]string, writers)
	boom := errors.New("boom")
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.InTx(ctx, func(tx backend.Backend) error {
				res, _, err := tx.Create(ctx, "Patient", []byte(fmt.Sprintf(`{"resourceType":"Patient","gender":"female","name":[{"family":"W%d"}]}`, i)), backend.CreateOptions{})
				if err != nil {
					return err
				}
				ids[i] = res.ID
				if i%5 == 0 {
					return boom // this write's Patient must vanish
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i := range writers {
		_, err := s.Read(ctx, "Patient", ids[i])
		switch {
		case i%5 == 0:
			if !errors.Is(errs[i], boom) {
				t.Errorf("writer %d: err = %v, want boom", i, errs[i])
			}
			if !errors.Is(err, fhir.ErrNotFound) {
				t.Errorf("writer %d failed but its Patient is readable (err %v)", i, err)
			}
		default:
			if errs[i] != nil || err != nil {
				t.Errorf("writer %d: InTx err = %v, Read err = %v", i, errs[i], err)
			}
		}
	}
}

func TestGroupCommitCancelledBeforeStart(t *testing.T) {
	s := openSQLite(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Create(ctx, "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a cancelled context: err = %v", err)
	}
	h, _ := s.History(context.Background(), backend.HistoryQuery{})
	if len(h.Entries) != 0 {
		t.Errorf("a cancelled write left %d history entries", len(h.Entries))
	}
}
