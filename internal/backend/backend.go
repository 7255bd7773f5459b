// Package backend defines the Backend interface that the FHIR API calls to store and find
// resources, whatever holds them (the embedded store, PostgreSQL or an upstream FHIR server).
//
// Backends return the sentinel errors of package fhir (fhir.ErrNotFound, fhir.ErrGone,
// fhir.ErrVersionConflict, fhir.ErrMultipleMatches), wrapped with detail, and *fhir.Error for
// failures that the client must see as they are. Package backendtest is the conformance suite
// every implementation passes.
package backend

import (
	"context"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Backend stores FHIR resources with full version history and searches them.
type Backend interface {
	// Read returns the current version. A deleted resource gives fhir.ErrGone, one that never
	// existed fhir.ErrNotFound.
	Read(ctx context.Context, typ, id string) (*fhir.Resource, error)
	// VRead returns one version. The version that records a delete gives fhir.ErrGone.
	VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error)
	// Create stores a new resource with a server-assigned id (any id in body is replaced).
	// With IfNoneExist set, it returns the one existing match instead (created false), or
	// fhir.ErrMultipleMatches when several match.
	Create(ctx context.Context, typ string, body []byte, opts CreateOptions) (res *fhir.Resource, created bool, err error)
	// Update stores a new version of typ/id, creating it when the id is unused or deleted
	// (created true). With IfMatch set, the current version must equal it, or
	// fhir.ErrVersionConflict.
	Update(ctx context.Context, typ, id string, body []byte, opts UpdateOptions) (res *fhir.Resource, created bool, err error)
	// Delete records a delete as a new version. Deleting a resource that is already deleted or
	// never existed succeeds and returns nil (FHIR deletes are idempotent).
	Delete(ctx context.Context, typ, id string) (*fhir.Resource, error)
	// History returns versions newest first, for one resource, one type, or the whole store.
	History(ctx context.Context, q HistoryQuery) (*HistoryPage, error)
	// Search runs a search and returns one page.
	Search(ctx context.Context, q *search.Query) (*search.Result, error)
	// InTx runs fn with a Backend whose writes commit together when fn returns nil and are rolled
	// back otherwise (transaction Bundles, conditional operations).
	InTx(ctx context.Context, fn func(tx Backend) error) error
}

// CreateOptions tunes Create.
type CreateOptions struct {
	// IfNoneExist makes the create conditional (the If-None-Exist header).
	IfNoneExist *search.Query
	// ID, when set, is used instead of a generated id (imports); the resource must not exist.
	ID string
}

// UpdateOptions tunes Update.
type UpdateOptions struct {
	// IfMatch is the version the current one must have; 0 means unconditional.
	IfMatch int64
}

// HistoryQuery selects history entries. Type and ID narrow the scope: both set is instance history,
// only Type is type history, neither is system history.
type HistoryQuery struct {
	Type, ID string
	// Since keeps versions updated at or after this instant (_since).
	Since time.Time
	// Count is the page size.
	Count int
	// Cursor continues a previous page.
	Cursor string
}

// HistoryPage is one page of history, newest first.
type HistoryPage struct {
	Entries []*HistoryEntry
	// Total is the number of entries over every page, when the backend counted them (it does
	// for instance history; type and system history can be too large to count on every page).
	Total *int
	// Next is the cursor of the next page, empty on the last page.
	Next string
}

// HistoryEntry is one version and the interaction that made it.
type HistoryEntry struct {
	Resource *fhir.Resource
	// Method is POST, PUT or DELETE.
	Method string
}
