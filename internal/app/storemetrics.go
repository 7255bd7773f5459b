package app

import (
	"context"
	"errors"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/metrics"
)

// timedBackend feeds fhirgate_store_operation_duration_seconds with every backend call the FHIR
// API makes. Answers that are part of FHIR semantics (not found, gone, a version conflict) count
// as ok: the store worked; only failures of the store itself count as errors.
type timedBackend struct {
	backend.Backend
	m *metrics.Metrics
}

func (t timedBackend) observe(op string, start time.Time, err error) {
	switch {
	case errors.Is(err, fhir.ErrNotFound), errors.Is(err, fhir.ErrGone), errors.Is(err, fhir.ErrVersionConflict),
		errors.Is(err, fhir.ErrMultipleMatches), errors.Is(err, fhir.ErrConflict):
		err = nil
	}
	var fe *fhir.Error
	if errors.As(err, &fe) && fe.Status < 500 {
		err = nil // a request the store refused as invalid
	}
	t.m.ObserveStore(op, time.Since(start), err)
}

func (t timedBackend) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	start := time.Now()
	r, err := t.Backend.Read(ctx, typ, id)
	t.observe("fhir.read", start, err)
	return r, err
}

func (t timedBackend) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	start := time.Now()
	r, err := t.Backend.VRead(ctx, typ, id, version)
	t.observe("fhir.vread", start, err)
	return r, err
}

func (t timedBackend) Create(ctx context.Context, typ string, body []byte, opts backend.CreateOptions) (*fhir.Resource, bool, error) {
	start := time.Now()
	r, created, err := t.Backend.Create(ctx, typ, body, opts)
	t.observe("fhir.create", start, err)
	return r, created, err
}

func (t timedBackend) Update(ctx context.Context, typ, id string, body []byte, opts backend.UpdateOptions) (*fhir.Resource, bool, error) {
	start := time.Now()
	r, created, err := t.Backend.Update(ctx, typ, id, body, opts)
	t.observe("fhir.update", start, err)
	return r, created, err
}

func (t timedBackend) Delete(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	start := time.Now()
	r, err := t.Backend.Delete(ctx, typ, id)
	t.observe("fhir.delete", start, err)
	return r, err
}

func (t timedBackend) History(ctx context.Context, q backend.HistoryQuery) (*backend.HistoryPage, error) {
	start := time.Now()
	p, err := t.Backend.History(ctx, q)
	t.observe("fhir.history", start, err)
	return p, err
}

func (t timedBackend) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	start := time.Now()
	r, err := t.Backend.Search(ctx, q)
	t.observe("fhir.search", start, err)
	return r, err
}

// InTx times the whole transaction and, inside it, each operation.
func (t timedBackend) InTx(ctx context.Context, fn func(tx backend.Backend) error) error {
	start := time.Now()
	err := t.Backend.InTx(ctx, func(tx backend.Backend) error { return fn(timedBackend{tx, t.m}) })
	t.observe("fhir.transaction", start, err)
	return err
}
