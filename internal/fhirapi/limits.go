package fhirapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Limits bound what one request may ask of the backend. They are the FHIR API's share of the
// gateway's request limits: the gateway sees bytes and rates, only the FHIR API sees a search.
type Limits struct {
	// MaxSearchParams caps the parameter values of one search (each repetition counts, as each
	// is one more clause); paging, format and pretty-printing parameters do not count.
	MaxSearchParams int
	// MaxIncludes caps the _include and _revinclude values of one search.
	MaxIncludes int
	// QueryTimeout bounds a read-only interaction (read, vread, search, history, $everything) in
	// the backend; past it the request is cancelled and answered 503.
	QueryTimeout time.Duration
}

// freeParams are the parameters that add no work to a search.
var freeParams = map[string]bool{pageParam: true, "_format": true, "_pretty": true}

// checkSearchShape refuses a search with more parameters or includes than the limits allow, before
// anything is parsed or run: 400 with issue code too-costly.
func (l Limits) checkSearchShape(params url.Values) error {
	n, includes := 0, 0
	for name, values := range params {
		if freeParams[name] {
			continue
		}
		n += len(values)
		if base, _, _ := strings.Cut(name, ":"); base == "_include" || base == "_revinclude" {
			includes += len(values)
		}
	}
	if l.MaxSearchParams > 0 && n > l.MaxSearchParams {
		return fhir.Errorf(http.StatusBadRequest, "too-costly", "the search has %d parameters; at most %d are allowed", n, l.MaxSearchParams)
	}
	if l.MaxIncludes > 0 && includes > l.MaxIncludes {
		return fhir.Errorf(http.StatusBadRequest, "too-costly", "the search has %d _include/_revinclude parameters; at most %d are allowed", includes, l.MaxIncludes)
	}
	return nil
}

// readOnly reports whether a request only reads, so that cancelling it at the query deadline
// cannot leave a write half done. POST _search is a read.
func readOnly(r *http.Request) bool {
	return r.Method == http.MethodGet || r.Method == http.MethodHead ||
		r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/_search")
}

// runBounded runs an endpoint, read-only ones under the query deadline. A deadline that passes
// turns whatever the endpoint failed with into a 503 timeout; the audit event is still recorded,
// with the request's own context.
func (a *API) runBounded(w http.ResponseWriter, r *http.Request, fn handlerFunc) error {
	limit := a.opts.Limits.QueryTimeout
	if limit <= 0 || !readOnly(r) {
		return fn(w, r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), limit)
	defer cancel()
	err := fn(w, r.WithContext(ctx))
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && r.Context().Err() == nil {
		w.Header().Set("Retry-After", "1")
		return fhir.Errorf(http.StatusServiceUnavailable, "timeout", "the query took longer than the %s this server allows; narrow the search and try again", limit)
	}
	return err
}
