package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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

// A write that races with Close, or comes after it, is answered with an error; it never waits
// forever for a committer that has stopped.
func TestWriteAfterCloseDoesNotHang(t *testing.T) {
	s := openSQLite(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		for range 32 {
			if _, _, err := s.Create(context.Background(), "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{}); err == nil {
				done <- errors.New("a create after Close succeeded")
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write after Close hangs")
	}
}

// A nested InTx whose fn fails is rolled back, even when the enclosing transaction commits.
func TestNestedInTxRollsBackAlone(t *testing.T) {
	s := openSQLite(t)
	ctx := context.Background()
	var inner, outer string
	boom := errors.New("boom")
	err := s.InTx(ctx, func(tx backend.Backend) error {
		if err := tx.InTx(ctx, func(tx backend.Backend) error {
			res, _, err := tx.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"male"}`), backend.CreateOptions{})
			if err != nil {
				return err
			}
			inner = res.ID
			return boom
		}); !errors.Is(err, boom) {
			return fmt.Errorf("nested InTx = %w, want boom", err)
		}
		res, _, err := tx.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","gender":"female"}`), backend.CreateOptions{})
		if err != nil {
			return err
		}
		outer = res.ID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "Patient", inner); !errors.Is(err, fhir.ErrNotFound) {
		t.Errorf("the failed nested write is stored: Read = %v", err)
	}
	if _, err := s.Read(ctx, "Patient", outer); err != nil {
		t.Errorf("the enclosing write is lost: %v", err)
	}
}
