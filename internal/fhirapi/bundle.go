package fhirapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// postBundle is POST to the base: a batch or transaction Bundle. Every entry is decided by the
// policy as if it were its own request (SMART: the server validates each inner request).
func (a *API) postBundle(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Bundles == nil {
		return fhir.Errorf(http.StatusNotImplemented, "not-supported", "batch and transaction Bundles are not enabled")
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	h, err := fhir.DecodeHeader(body)
	if err != nil {
		return err
	}
	if h.ResourceType != "Bundle" {
		return fhir.Invalid("resourceType", "POST to the base takes a Bundle, got %s", h.ResourceType)
	}
	p := *a.opts.Bundles
	decisions := &queryDecisions{}
	p.Backend = &entryReads{Backend: p.Backend, a: a, r: r, decisions: decisions}
	reads := &entryDecisions{}
	p.Authorize = func(ctx context.Context, i int, method, resourceType, id string, body []byte) error {
		return a.authorizeEntry(r.WithContext(ctx), method, resourceType, id, body, func(d policy.Decision) { reads.put(i, d) })
	}
	if parse := p.Parse; parse != nil {
		// Conditional criteria (ifNoneExist, conditional update, patch and delete, conditional
		// references) are searches: narrowed like any search, so that they match only what the
		// caller may see and their outcome tells nothing about other patients' resources.
		p.Parse = func(typ string, params url.Values) (*search.Query, error) {
			q, err := parse(typ, params)
			if err != nil {
				return nil, err
			}
			d, err := a.authorizeCriteria(r, typ, q)
			if err != nil {
				return nil, err
			}
			decisions.put(q, d)
			return q, nil
		}
	}
	resp, err := p.Process(r.Context(), body)
	if err != nil {
		return err
	}
	// The processor reads an entry's resource itself: release it through the filter of the
	// read's decision, which redacts it where the labels ask.
	for i := range resp.Entry {
		e := &resp.Entry[i]
		d, ok := reads.get(i)
		if !ok || len(e.Resource) == 0 {
			continue
		}
		res, err := fhir.DecodeHeader(e.Resource)
		if err != nil {
			return err
		}
		released := &fhir.Resource{Type: res.ResourceType, ID: res.ID, Body: e.Resource}
		if !a.visible(r, d, released) {
			// Changed between the entry's check and its read: answer as for a resource not seen.
			status, oo := fhir.OutcomeFromError(refused(d, res.ResourceType, res.ID))
			e.Resource, e.Response = nil, &fhir.EntryResponse{Status: strconv.Itoa(status) + " " + http.StatusText(status), Outcome: fhir.MarshalOutcome(oo)}
			continue
		}
		e.Resource = released.Body
	}
	st := stateOf(r)
	if resp.Type == "batch-response" {
		st.action = audit.ActionBatch
	}
	for _, e := range resp.Entry {
		if e.Response != nil && e.Response.Location != "" {
			loc := strings.TrimPrefix(e.Response.Location, a.opts.BaseURL+"/")
			if typ, rest, ok := strings.Cut(loc, "/"); ok {
				id, _, _ := strings.Cut(rest, "/")
				touched(r, &fhir.Resource{Type: typ, ID: id, Body: e.Resource})
			}
		}
	}
	out, err := marshal(resp)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// authorizeEntry decides one Bundle entry. Reads pass the stored body to the policy so that it is
// checked before the processor returns it; a search is decided here on its type, narrowed when
// its parameters are parsed, and its results filtered by entryReads.Search.
func (a *API) authorizeEntry(r *http.Request, method, typ, id string, body []byte, readDecision func(policy.Decision)) error {
	in := policy.Input{Type: typ, ID: id, Resource: body}
	if a.servesAuditTrail(typ) && method != http.MethodGet && method != http.MethodHead {
		return refuseAuditWrite()
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		if id == "" {
			in.Interaction = policy.SearchType
			in.Query = &search.Query{Types: []string{typ}}
			_, err := a.authorize(r, in)
			return err
		}
		in.Interaction = policy.Read
		cur, readErr := a.opts.Backend.Read(r.Context(), typ, id)
		if readErr != nil && !errors.Is(readErr, fhir.ErrNotFound) && !errors.Is(readErr, fhir.ErrGone) {
			return readErr
		}
		if cur != nil {
			in.Resource = cur.Body
		}
		d, err := a.authorize(r, in)
		if err != nil {
			return err
		}
		switch {
		case errors.Is(readErr, fhir.ErrGone):
			// 410 only to a caller who could see the resource before its delete, as outside a
			// Bundle; 404 otherwise.
			if !a.goneVisible(r, d, cur) {
				return refused(d, typ, id)
			}
		case readErr == nil && !a.visible(r, d, cur):
			return refused(d, typ, id)
		}
		readDecision(d)
		return nil
	case http.MethodPost:
		in.Interaction = policy.Create
		if id != "" {
			// The processor passes the id of the match of an ifNoneExist, which it then returns
			// instead of creating: the caller must be allowed to read that resource.
			if err := a.authorizeExisting(r, typ, id); err != nil {
				return err
			}
		}
	case http.MethodPut:
		in.Interaction = policy.Update
	case http.MethodPatch:
		in.Interaction = policy.Patch
	case http.MethodDelete:
		in.Interaction = policy.Delete
	default:
		return fhir.Invalid("", "method %s is not allowed in a Bundle entry", method)
	}
	if id != "" && in.Interaction != policy.Create {
		cur, err := a.current(r, typ, id)
		if err != nil {
			return err
		}
		if cur != nil {
			in.Current = cur.Body
		}
	}
	_, err := a.authorize(r, in)
	return err
}

// authorizeExisting refuses a Bundle create whose ifNoneExist matched a resource the caller may
// not read. An id that names nothing stored is a new resource and needs nothing more.
func (a *API) authorizeExisting(r *http.Request, typ, id string) error {
	cur, err := a.opts.Backend.Read(r.Context(), typ, id)
	if errors.Is(err, fhir.ErrNotFound) || errors.Is(err, fhir.ErrGone) {
		return nil
	}
	if err != nil {
		return err
	}
	d, err := a.authorize(r, policy.Input{Interaction: policy.Read, Type: typ, ID: id, Resource: cur.Body})
	if err != nil {
		return err
	}
	// The Bundle returns the match as stored: the caller must see it whole.
	return a.visibleWhole(r, d, cur)
}

// entryDecisions are the decisions of a Bundle's read entries, by entry index.
type entryDecisions struct {
	mu sync.Mutex
	m  map[int]policy.Decision
}

func (e *entryDecisions) put(i int, d policy.Decision) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[int]policy.Decision{}
	}
	e.m[i] = d
}

func (e *entryDecisions) get(i int) (policy.Decision, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	d, ok := e.m[i]
	return d, ok
}

// entryReads is the backend a Bundle runs on: its vreads are checked as a vread outside a Bundle
// is, because the entry's Authorize sees the id but not the version read (an older version may
// belong to another patient). A version the caller may not see, and the delete of a resource
// whose last version it may not see, answer 404. Reads of the current version are checked by
// authorizeEntry; the processor's own reads for writes are not checked again here, so that a
// write needs no read permission.
type entryReads struct {
	backend.Backend
	a *API
	r *http.Request
	// decisions are the access decisions of the queries the Bundle's parser narrowed.
	decisions *queryDecisions
}

// queryDecisions remembers the decision each narrowed query was made under, so that its results
// are filtered by the same decision. A query the parser did not narrow has none and is refused.
type queryDecisions struct {
	mu sync.Mutex
	m  map[*search.Query]policy.Decision
}

func (q *queryDecisions) put(query *search.Query, d policy.Decision) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil {
		q.m = map[*search.Query]policy.Decision{}
	}
	q.m[query] = d
}

func (q *queryDecisions) get(query *search.Query) (policy.Decision, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	d, ok := q.m[query]
	return d, ok
}

// Search runs a search of the Bundle (an entry's search or conditional criteria) and passes every
// match and included resource through the response filter of the decision its query was narrowed
// under, as a search outside a Bundle is. A total that counted held-back resources is dropped.
func (e *entryReads) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	d, ok := e.decisions.get(q)
	if !ok {
		return nil, fhir.Errorf(http.StatusForbidden, "forbidden", "this search was not authorized")
	}
	res, err := e.Backend.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	r := e.r.WithContext(ctx)
	matches, included, held := e.a.filterResults(r, d, res.Matches, res.Included)
	out := *res
	out.Matches, out.Included = matches, included
	if held {
		out.Total = nil
	}
	touched(r, matches...)
	touched(r, included...)
	return &out, nil
}

func (e *entryReads) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	res, err := e.Backend.VRead(ctx, typ, id, version)
	return e.check(ctx, typ, id, res, err)
}

func (e *entryReads) InTx(ctx context.Context, fn func(tx backend.Backend) error) error {
	return e.Backend.InTx(ctx, func(tx backend.Backend) error {
		return fn(&entryReads{Backend: tx, a: e.a, r: e.r, decisions: e.decisions})
	})
}

func (e *entryReads) check(ctx context.Context, typ, id string, res *fhir.Resource, err error) (*fhir.Resource, error) {
	gone := errors.Is(err, fhir.ErrGone)
	if (err != nil && !gone) || res == nil {
		return res, err
	}
	r := e.r.WithContext(ctx)
	d, derr := e.a.authorize(r, policy.Input{Interaction: policy.VRead, Type: typ, ID: id})
	if derr != nil {
		return nil, derr
	}
	if gone {
		if !e.a.goneVisible(r, d, res) {
			return nil, refused(d, typ, id)
		}
		return res, err
	}
	if !e.a.visible(r, d, res) {
		return nil, refused(d, typ, id)
	}
	return res, nil
}
