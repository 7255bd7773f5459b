package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Validator checks a resource before it is stored. It reports an invalid resource with a
// *fhir.Error (400 or 422 with the issues found); any other error is an internal failure (500).
type Validator interface {
	Validate(resourceType string, body []byte) error
}

// ParseFunc parses search parameters for one resource type into a Query; it reads conditional
// criteria (ifNoneExist, PUT/DELETE Type?criteria, conditional references) and GET searches.
type ParseFunc func(resourceType string, params url.Values) (*search.Query, error)

// AuthorizeFunc decides whether an entry may run. It is called right before the entry's backend
// work, after its references and conditional criteria are resolved: id is the id read, written or
// deleted ("" for a search or a conditional delete that matched nothing) and body the resource as
// it will be stored (nil for GET, HEAD and DELETE). A conditional reference in an entry's resource
// (Patient?identifier=...) is a search of another type: it is asked first, as method GET with
// that type and no id. A non-nil error denies the entry; it is reported as OutcomeFromError
// reports it (a *fhir.Error with status 403, typically).
type AuthorizeFunc func(ctx context.Context, entryIndex int, method, resourceType, id string, body []byte) error

// DefaultMaxEntries is the entry limit when Processor.MaxEntries is 0.
const DefaultMaxEntries = 1000

// Processor runs batch and transaction Bundles against a Backend. Backend is required; the other
// fields are optional, and their zero values are documented. A Processor is safe for concurrent
// use once built.
type Processor struct {
	// Backend stores the resources.
	Backend backend.Backend
	// Validator checks every resource written; nil stores resources that pass the structural
	// checks (a JSON object of the addressed type) unvalidated.
	Validator Validator
	// BaseURL is the FHIR base ({base_url}/fhir). Request URLs may be absolute on it, and
	// response fullUrls are made absolute with it; empty leaves fullUrl out of responses.
	BaseURL string
	// Parse parses conditional criteria and searches; nil makes conditional operations,
	// conditional references and GET searches fail with 400 not-supported.
	Parse ParseFunc
	// Authorize, when set, is asked before each entry runs.
	Authorize AuthorizeFunc
	// MaxEntries bounds the entries of one Bundle (413 beyond); 0 is DefaultMaxEntries and a
	// negative value means no limit (the importer).
	MaxEntries int
	// KeepIDs stores a POST entry whose resource carries an id under that id, as an update or
	// create (PUT Type/id), so that re-importing the same Bundle changes nothing but versions.
	// The REST API leaves it false: a POST gets a server-assigned id there.
	KeepIDs bool
	// Now is the clock for the response Bundle's meta.lastUpdated; time.Now when nil.
	Now func() time.Time
	// Log receives the causes of internal errors in batch entries (a transaction returns its
	// error to the caller); slog.Default when nil.
	Log *slog.Logger
}

// Process runs a batch or transaction Bundle and returns the batch-response or
// transaction-response Bundle. A transaction either succeeds whole or returns the error of the
// first failing entry (a *fhir.Error whose diagnostics name the entry) and changes nothing. A
// batch returns a response for every entry, failed ones with their OperationOutcome. Any other
// Bundle type, or a body that is not a Bundle, is a 400.
func (p *Processor) Process(ctx context.Context, body []byte) (*fhir.Bundle, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fhir.Invalid("", "the body must be a Bundle as a JSON object")
	}
	var in struct {
		ResourceType string             `json:"resourceType"`
		Type         string             `json:"type"`
		Entry        []fhir.BundleEntry `json:"entry"`
	}
	if err := json.Unmarshal(trimmed, &in); err != nil {
		return nil, fhir.Invalid("", "the body is not a valid Bundle: %v", err)
	}
	if in.ResourceType != "Bundle" {
		return nil, fhir.Invalid("resourceType", "POST to the base takes a Bundle, not %q", in.ResourceType)
	}
	return p.ProcessEntries(ctx, in.Type, in.Entry)
}

// ProcessEntries is Process for a Bundle already decoded: its type and entries.
func (p *Processor) ProcessEntries(ctx context.Context, bundleType string, entries []fhir.BundleEntry) (*fhir.Bundle, error) {
	if bundleType != "batch" && bundleType != "transaction" {
		return nil, fhir.Invalid("Bundle.type", "Bundle.type must be batch or transaction, not %q", bundleType)
	}
	max := p.MaxEntries
	if max == 0 {
		max = DefaultMaxEntries
	}
	if max > 0 && len(entries) > max {
		return nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly",
			"the Bundle has %d entries; the limit is %d", len(entries), max)
	}
	if bundleType == "transaction" {
		return p.transaction(ctx, entries)
	}
	return p.batch(ctx, entries), nil
}

// op is one entry in flight.
type op struct {
	index  int
	entry  *fhir.BundleEntry
	method string
	t      target
	// body is the resource of a POST or PUT, references resolved before the write.
	body        []byte
	bodyID      string
	ifMatch     int64
	ifNoneMatch int64
	ifNoneExist url.Values
	// patch is the JSON Patch of a PATCH entry.
	patch []patchOp

	// id is the id written or deleted once resolved.
	id string
	// existing is the match of a conditional create, which is then not created.
	existing *fhir.Resource

	status   int
	res      *fhir.Resource
	resource json.RawMessage // GET result
}

// rank is the transaction processing order: DELETE, POST, PUT and PATCH, then GET and HEAD.
func (o *op) rank() int {
	switch o.method {
	case http.MethodDelete:
		return 0
	case http.MethodPost:
		return 1
	case http.MethodPut, http.MethodPatch:
		return 2
	}
	return 3
}

func (p *Processor) prepare(i int, e *fhir.BundleEntry) (*op, error) {
	o := &op{index: i, entry: e}
	if e.Request == nil {
		return nil, fhir.Invalid("Bundle.entry.request", "the entry has no request")
	}
	o.method = strings.ToUpper(strings.TrimSpace(e.Request.Method))
	t, err := parseRequestURL(e.Request.URL, p.BaseURL)
	if err != nil {
		return nil, err
	}
	o.t = t
	conditional := t.ID == "" && len(t.Query) > 0
	switch o.method {
	case http.MethodPost:
		if t.ID != "" || t.HasQuery {
			return nil, fhir.Invalid("request.url", "a POST entry must address a resource type, not %q", e.Request.URL)
		}
	case http.MethodPut:
		if t.Version != 0 || (t.ID == "" && !conditional) {
			return nil, fhir.Invalid("request.url", "a PUT entry must address Type/id or Type?criteria, not %q", e.Request.URL)
		}
	case http.MethodDelete:
		if t.Version != 0 || (t.ID == "" && !conditional) {
			return nil, fhir.Invalid("request.url", "a DELETE entry must address Type/id or Type?criteria, not %q", e.Request.URL)
		}
	case http.MethodPatch:
		if t.Version != 0 || (t.ID == "" && !conditional) {
			return nil, fhir.Invalid("request.url", "a PATCH entry must address Type/id or Type?criteria, not %q", e.Request.URL)
		}
		if len(bytes.TrimSpace(e.Resource)) == 0 {
			return nil, fhir.Invalid("Bundle.entry.resource", "a PATCH entry needs a Binary holding a JSON Patch")
		}
		if o.patch, err = decodePatch(e.Resource); err != nil {
			return nil, err
		}
	case http.MethodGet, http.MethodHead:
	default:
		return nil, fhir.Invalid("request.method", "request.method %q is not GET, HEAD, POST, PUT, PATCH or DELETE", e.Request.Method)
	}
	if o.method == http.MethodPost || o.method == http.MethodPut {
		if len(bytes.TrimSpace(e.Resource)) == 0 || bytes.Equal(bytes.TrimSpace(e.Resource), []byte("null")) {
			return nil, fhir.Invalid("Bundle.entry.resource", "a %s entry needs a resource", o.method)
		}
		h, err := fhir.DecodeHeader(e.Resource)
		if err != nil {
			return nil, err
		}
		if h.ResourceType != t.Type {
			return nil, fhir.Invalid("Bundle.entry.resource", "the resource is a %s but request.url addresses %s", h.ResourceType, t.Type)
		}
		if h.ID != "" && !fhir.ValidID(h.ID) {
			return nil, fhir.Invalid(h.ResourceType+".id", "the resource id %q is not a valid FHIR id", h.ID)
		}
		// "The request body SHALL be a Resource with an id element that has an identical value
		// to the [id] in the URL." (R4 http.html#update)
		if o.method == http.MethodPut && t.ID != "" && h.ID != t.ID {
			return nil, fhir.Invalid(h.ResourceType+".id", "the resource id %q differs from the id %q in request.url", h.ID, t.ID)
		}
		o.body, o.bodyID = e.Resource, h.ID
	} else if o.method != http.MethodPatch && len(bytes.TrimSpace(e.Resource)) > 0 && !bytes.Equal(bytes.TrimSpace(e.Resource), []byte("null")) {
		return nil, fhir.Invalid("Bundle.entry.resource", "a %s entry must not carry a resource", o.method)
	}
	if s := e.Request.IfMatch; s != "" {
		if o.method != http.MethodPut && o.method != http.MethodPatch && o.method != http.MethodDelete {
			return nil, fhir.Invalid("request.ifMatch", "ifMatch applies to PUT, PATCH and DELETE entries only")
		}
		if o.ifMatch, err = parseETag(s, "request.ifMatch"); err != nil {
			return nil, err
		}
	}
	if s := e.Request.IfNoneMatch; s != "" {
		if (o.method != http.MethodGet && o.method != http.MethodHead) || t.ID == "" {
			return nil, fhir.Invalid("request.ifNoneMatch", "ifNoneMatch is supported on reads (GET Type/id) only")
		}
		if o.ifNoneMatch, err = parseETag(s, "request.ifNoneMatch"); err != nil {
			return nil, err
		}
	}
	if s := strings.TrimSpace(e.Request.IfNoneExist); s != "" {
		if o.method != http.MethodPost {
			return nil, fhir.Invalid("request.ifNoneExist", "ifNoneExist applies to POST entries only")
		}
		if typ, q, ok := strings.Cut(s, "?"); ok {
			if typ != t.Type && !strings.HasSuffix(typ, "/"+t.Type) {
				return nil, fhir.Invalid("request.ifNoneExist", "ifNoneExist %q searches another type than %s", s, t.Type)
			}
			s = q
		}
		v, err := url.ParseQuery(s)
		if err != nil || len(v) == 0 {
			return nil, fhir.Invalid("request.ifNoneExist", "ifNoneExist %q is not a search query", e.Request.IfNoneExist)
		}
		o.ifNoneExist = v
	}
	return o, nil
}

// entryError turns the error of entry i into a *fhir.Error that keeps the status and issue of
// err and names the entry; err stays its cause.
func entryError(i int, err error) *fhir.Error {
	status, oo := fhir.OutcomeFromError(err)
	first := oo.Issue[0]
	fe := &fhir.Error{
		Status:      status,
		Code:        first.Code,
		Severity:    first.Severity,
		Diagnostics: fmt.Sprintf("Bundle.entry[%d]: %s", i, first.Diagnostics),
		Expression:  first.Expression,
		Issues:      oo.Issue[1:],
		Cause:       err,
	}
	if len(fe.Expression) == 0 {
		fe.Expression = []string{fmt.Sprintf("Bundle.entry[%d]", i)}
	}
	return fe
}

func (p *Processor) transaction(ctx context.Context, entries []fhir.BundleEntry) (*fhir.Bundle, error) {
	ops := make([]*op, len(entries))
	fullURLs := make(map[string]int, len(entries))
	for i := range entries {
		o, err := p.prepare(i, &entries[i])
		if err != nil {
			return nil, entryError(i, err)
		}
		if fu := entries[i].FullURL; fu != "" {
			if j, dup := fullURLs[fu]; dup {
				return nil, entryError(i, fhir.Invalid("Bundle.entry.fullUrl", "entries %d and %d have the same fullUrl %q", j, i, fu))
			}
			fullURLs[fu] = i
		}
		ops[i] = o
	}
	order := slices.Clone(ops)
	slices.SortStableFunc(order, func(a, b *op) int { return a.rank() - b.rank() })

	err := p.Backend.InTx(ctx, func(tx backend.Backend) error {
		// 1. Deletes.
		for _, o := range order {
			if o.method == http.MethodDelete {
				if err := p.doDelete(ctx, tx, o); err != nil {
					return entryError(o.index, err)
				}
			}
		}
		// 2. The identity of every create and update, so that references can be resolved.
		refs := map[string]string{}
		for _, o := range order {
			var err error
			switch o.method {
			case http.MethodPost:
				err = p.resolveCreate(ctx, tx, o)
			case http.MethodPut, http.MethodPatch:
				err = p.resolveUpdate(ctx, tx, o)
			default:
				continue
			}
			if err != nil {
				return entryError(o.index, err)
			}
			if o.method == http.MethodPatch {
				continue
			}
			if fu := o.entry.FullURL; isLocalURL(fu) || (o.method == http.MethodPost && strings.Contains(fu, "://")) {
				refs[fu] = o.t.Type + "/" + o.id
			}
		}
		// "If any resource identities (including resolved identities from conditional
		// update/delete) overlap in steps 1-3, then the transaction SHALL fail." (R4 http.html#trules)
		changed := map[string]int{}
		for _, o := range order {
			if o.rank() > 2 || o.id == "" || o.existing != nil {
				continue
			}
			ref := o.t.Type + "/" + o.id
			if j, dup := changed[ref]; dup {
				return entryError(o.index, fhir.Invalid("", "entries %d and %d both change %s", j, o.index, ref))
			}
			changed[ref] = o.index
		}
		// 3. Resolve references, then write creates and updates.
		cond := map[string]string{}
		for _, o := range order {
			if o.method != http.MethodPost && o.method != http.MethodPut {
				continue
			}
			if err := p.resolveRefs(ctx, tx, o, refs, cond); err != nil {
				return entryError(o.index, err)
			}
		}
		for _, o := range order {
			var err error
			switch o.method {
			case http.MethodPost:
				err = p.doCreate(ctx, tx, o)
			case http.MethodPut:
				err = p.doUpdate(ctx, tx, o)
			case http.MethodPatch:
				err = p.doPatch(ctx, tx, o, refs, cond)
			default:
				continue
			}
			if err != nil {
				return entryError(o.index, err)
			}
		}
		// 4. Reads and searches see the writes.
		for _, o := range order {
			if o.rank() == 3 {
				if err := p.doGet(ctx, tx, o); err != nil {
					return entryError(o.index, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p.response("transaction-response", ops, nil), nil
}

func (p *Processor) batch(ctx context.Context, entries []fhir.BundleEntry) *fhir.Bundle {
	ops := make([]*op, len(entries))
	failed := make([]error, len(entries))
	for i := range entries {
		o, err := p.prepare(i, &entries[i])
		if err == nil {
			if o.rank() == 3 {
				err = p.doGet(ctx, p.Backend, o)
			} else {
				err = p.Backend.InTx(ctx, func(tx backend.Backend) error { return p.runOne(ctx, tx, o) })
			}
		}
		if err != nil {
			fe := entryError(i, err)
			if fe.Status >= 500 {
				p.logger().ErrorContext(ctx, "batch entry failed", "entry", i, "error", err)
			}
			failed[i] = fe
			continue
		}
		ops[i] = o
	}
	return p.response("batch-response", ops, failed)
}

// runOne runs one write entry of a batch inside its own transaction.
func (p *Processor) runOne(ctx context.Context, tx backend.Backend, o *op) error {
	switch o.method {
	case http.MethodDelete:
		return p.doDelete(ctx, tx, o)
	case http.MethodPost:
		if err := p.resolveCreate(ctx, tx, o); err != nil {
			return err
		}
		if err := p.resolveRefs(ctx, tx, o, nil, map[string]string{}); err != nil {
			return err
		}
		return p.doCreate(ctx, tx, o)
	case http.MethodPut:
		if err := p.resolveUpdate(ctx, tx, o); err != nil {
			return err
		}
		if err := p.resolveRefs(ctx, tx, o, nil, map[string]string{}); err != nil {
			return err
		}
		return p.doUpdate(ctx, tx, o)
	case http.MethodPatch:
		if err := p.resolveUpdate(ctx, tx, o); err != nil {
			return err
		}
		return p.doPatch(ctx, tx, o, nil, map[string]string{})
	}
	return p.doGet(ctx, tx, o)
}

func (p *Processor) logger() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// matches runs conditional criteria and returns up to two matches (two means several).
func (p *Processor) matches(ctx context.Context, b backend.Backend, typ string, params url.Values, what string) ([]*fhir.Resource, error) {
	if p.Parse == nil {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", "%s is not supported by this server", what)
	}
	q, err := p.Parse(typ, params)
	if err != nil {
		return nil, err
	}
	if len(q.Clauses) == 0 && q.Compartment == nil {
		return nil, fhir.Invalid("", "the criteria of the %s select no search parameter", what)
	}
	// Only the matches count: no paging, sorting, includes, counting or summaries.
	q.Count, q.Cursor, q.Sort = 2, "", nil
	q.Includes, q.RevIncludes = nil, nil
	q.Summary, q.Elements, q.Total = "", nil, search.TotalNone
	r, err := b.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	return r.Matches, nil
}

func (p *Processor) authorize(ctx context.Context, o *op, id string, body []byte) error {
	if p.Authorize == nil {
		return nil
	}
	return p.Authorize(ctx, o.index, o.method, o.t.Type, id, body)
}

func (p *Processor) validate(o *op) error {
	if p.Validator == nil {
		return nil
	}
	return p.Validator.Validate(o.t.Type, o.body)
}

func (p *Processor) doDelete(ctx context.Context, tx backend.Backend, o *op) error {
	o.status = http.StatusNoContent
	id := o.t.ID
	if id == "" {
		m, err := p.matches(ctx, tx, o.t.Type, o.t.Query, "conditional delete")
		if err != nil {
			return err
		}
		switch len(m) {
		case 0:
		case 1:
			id = m[0].ID
		default:
			return fmt.Errorf("conditional delete %s: %w", o.entry.Request.URL, fhir.ErrMultipleMatches)
		}
	}
	o.id = id
	if err := p.authorize(ctx, o, id, nil); err != nil {
		return err
	}
	if id == "" {
		return nil
	}
	if o.ifMatch != 0 {
		cur, err := tx.Read(ctx, o.t.Type, id)
		if err != nil && !errors.Is(err, fhir.ErrNotFound) && !errors.Is(err, fhir.ErrGone) {
			return err
		}
		if err != nil || cur.VersionID != o.ifMatch {
			return fmt.Errorf("%s/%s ifMatch %d: %w", o.t.Type, id, o.ifMatch, fhir.ErrVersionConflict)
		}
	}
	_, err := tx.Delete(ctx, o.t.Type, id)
	return err
}

func (p *Processor) resolveCreate(ctx context.Context, tx backend.Backend, o *op) error {
	if o.ifNoneExist != nil {
		m, err := p.matches(ctx, tx, o.t.Type, o.ifNoneExist, "conditional create")
		if err != nil {
			return err
		}
		switch len(m) {
		case 0:
		case 1:
			o.existing, o.id = m[0], m[0].ID
			return nil
		default:
			return fmt.Errorf("ifNoneExist %s: %w", o.entry.Request.IfNoneExist, fhir.ErrMultipleMatches)
		}
	}
	if p.KeepIDs && o.bodyID != "" {
		o.id = o.bodyID
	} else {
		o.id = newID()
	}
	return nil
}

func (p *Processor) resolveUpdate(ctx context.Context, tx backend.Backend, o *op) error {
	if o.t.ID != "" {
		o.id = o.t.ID
		return nil
	}
	// Conditional update (R4 http.html#cond-update).
	m, err := p.matches(ctx, tx, o.t.Type, o.t.Query, "conditional update")
	if err != nil {
		return err
	}
	switch len(m) {
	case 0:
		if o.method == http.MethodPatch {
			return fhir.Errorf(http.StatusNotFound, "not-found", "the conditional patch %s matches no resource", o.entry.Request.URL)
		}
		if o.bodyID != "" {
			o.id = o.bodyID
		} else {
			o.id = newID()
		}
	case 1:
		if o.bodyID != "" && o.bodyID != m[0].ID {
			return fhir.Invalid(o.t.Type+".id", "the resource id %q differs from the id %q of the resource the criteria match", o.bodyID, m[0].ID)
		}
		o.id = m[0].ID
	default:
		return fmt.Errorf("conditional update %s: %w", o.entry.Request.URL, fhir.ErrMultipleMatches)
	}
	return nil
}

// resolveRefs rewrites o.body: fullUrls of other entries (refs) become Type/id, and conditional
// references (Patient?identifier=...) become the one resource they match; cond caches those.
func (p *Processor) resolveRefs(ctx context.Context, tx backend.Backend, o *op, refs, cond map[string]string) error {
	var firstErr error
	lookup := func(s string) (string, bool) {
		r, ok := refs[s]
		return r, ok
	}
	o.body = rewriteStrings(o.body, func(key, s string) (string, bool) {
		if firstErr != nil {
			return "", false
		}
		if r, ok := refs[s]; ok {
			return r, true
		}
		switch {
		case key == "div":
			return replaceInNarrative(s, lookup)
		case key != "reference":
			return "", false
		case isLocalURL(s):
			firstErr = fhir.Invalid("", "the reference %q names no fullUrl of a resource created or updated in this Bundle", s)
			return "", false
		case isConditionalRef(s):
			if r, ok := cond[s]; ok {
				return r, true
			}
			typ, query, _ := strings.Cut(s, "?")
			params, err := url.ParseQuery(query)
			if err != nil {
				firstErr = fhir.Invalid("", "the conditional reference %q has a malformed query", s)
				return "", false
			}
			// The lookup reads another type than the entry writes: ask as for a search of it.
			if p.Authorize != nil {
				if err := p.Authorize(ctx, o.index, http.MethodGet, typ, "", nil); err != nil {
					firstErr = err
					return "", false
				}
			}
			m, err := p.matches(ctx, tx, typ, params, "conditional reference")
			if err != nil {
				firstErr = err
				return "", false
			}
			if len(m) != 1 {
				firstErr = fhir.Errorf(http.StatusPreconditionFailed, "processing",
					"the conditional reference %q matches %s", s, map[bool]string{true: "no resource", false: "more than one resource"}[len(m) == 0])
				return "", false
			}
			cond[s] = m[0].Ref()
			return cond[s], true
		}
		return "", false
	})
	return firstErr
}

// isLocalURL reports whether s is a Bundle-local identity (urn:uuid:..., urn:oid:...).
func isLocalURL(s string) bool {
	return strings.HasPrefix(s, "urn:uuid:") || strings.HasPrefix(s, "urn:oid:")
}

// isConditionalRef reports whether a Reference.reference is a conditional reference
// (Type?criteria), which transactions resolve.
func isConditionalRef(s string) bool {
	typ, q, ok := strings.Cut(s, "?")
	return ok && q != "" && fhir.IsResourceType(typ)
}

func (p *Processor) doCreate(ctx context.Context, tx backend.Backend, o *op) error {
	if o.existing != nil {
		if err := p.authorize(ctx, o, o.existing.ID, o.body); err != nil {
			return err
		}
		o.status, o.res = http.StatusOK, o.existing
		return nil
	}
	if err := p.validate(o); err != nil {
		return err
	}
	if err := p.authorize(ctx, o, o.id, o.body); err != nil {
		return err
	}
	if p.KeepIDs && o.id == o.bodyID {
		res, created, err := tx.Update(ctx, o.t.Type, o.id, o.body, backend.UpdateOptions{})
		if err != nil {
			return err
		}
		o.res, o.status = res, http.StatusOK
		if created {
			o.status = http.StatusCreated
		}
		return nil
	}
	res, _, err := tx.Create(ctx, o.t.Type, o.body, backend.CreateOptions{ID: o.id})
	if err != nil {
		return err
	}
	o.res, o.status = res, http.StatusCreated
	return nil
}

func (p *Processor) doUpdate(ctx context.Context, tx backend.Backend, o *op) error {
	if err := p.validate(o); err != nil {
		return err
	}
	if err := p.authorize(ctx, o, o.id, o.body); err != nil {
		return err
	}
	res, created, err := tx.Update(ctx, o.t.Type, o.id, o.body, backend.UpdateOptions{IfMatch: o.ifMatch})
	if err != nil {
		return err
	}
	o.res, o.status = res, http.StatusOK
	if created {
		o.status = http.StatusCreated
	}
	return nil
}

// doPatch applies a JSON Patch to the current version and stores the result as the next one.
func (p *Processor) doPatch(ctx context.Context, tx backend.Backend, o *op, refs, cond map[string]string) error {
	cur, err := tx.Read(ctx, o.t.Type, o.id)
	if err != nil {
		return err
	}
	if o.ifMatch != 0 && cur.VersionID != o.ifMatch {
		return fmt.Errorf("%s/%s ifMatch %d: %w", o.t.Type, o.id, o.ifMatch, fhir.ErrVersionConflict)
	}
	body, err := applyPatch(cur.Body, o.patch)
	if err != nil {
		return err
	}
	h, err := fhir.DecodeHeader(body)
	if err != nil || h.ResourceType != o.t.Type || h.ID != o.id {
		return fhir.Errorf(http.StatusUnprocessableEntity, "processing", "the patch must leave a %s with id %q", o.t.Type, o.id)
	}
	o.body = body
	if err := p.resolveRefs(ctx, tx, o, refs, cond); err != nil {
		return err
	}
	if err := p.validate(o); err != nil {
		return err
	}
	if err := p.authorize(ctx, o, o.id, o.body); err != nil {
		return err
	}
	res, _, err := tx.Update(ctx, o.t.Type, o.id, o.body, backend.UpdateOptions{IfMatch: cur.VersionID})
	if err != nil {
		return err
	}
	o.res, o.status = res, http.StatusOK
	return nil
}

func (p *Processor) doGet(ctx context.Context, b backend.Backend, o *op) error {
	o.id = o.t.ID
	if err := p.authorize(ctx, o, o.t.ID, nil); err != nil {
		return err
	}
	o.status = http.StatusOK
	if o.t.ID != "" {
		var (
			res *fhir.Resource
			err error
		)
		if o.t.Version != 0 {
			res, err = b.VRead(ctx, o.t.Type, o.t.ID, o.t.Version)
		} else {
			res, err = b.Read(ctx, o.t.Type, o.t.ID)
		}
		if err != nil {
			return err
		}
		o.res = res
		if o.ifNoneMatch != 0 && o.ifNoneMatch == res.VersionID {
			o.status = http.StatusNotModified
			return nil
		}
		if o.method == http.MethodGet {
			o.resource = res.Body
		}
		return nil
	}
	if p.Parse == nil {
		return fhir.Errorf(http.StatusBadRequest, "not-supported", "searches in a Bundle are not supported by this server")
	}
	q, err := p.Parse(o.t.Type, o.t.Query)
	if err != nil {
		return err
	}
	if (q.Summary != "" && q.Summary != search.SummaryCount && q.Summary != "false") || len(q.Elements) > 0 {
		return fhir.Errorf(http.StatusBadRequest, "not-supported", "_summary and _elements are not supported in searches inside a Bundle")
	}
	r, err := b.Search(ctx, q)
	if err != nil {
		return err
	}
	if o.method == http.MethodHead {
		return nil
	}
	set := fhir.Bundle{ResourceType: "Bundle", ID: newID(), Type: "searchset", Total: r.Total}
	for _, group := range []struct {
		mode string
		rs   []*fhir.Resource
	}{{"match", r.Matches}, {"include", r.Included}} {
		for _, m := range group.rs {
			set.Entry = append(set.Entry, fhir.BundleEntry{FullURL: p.fullURL(m), Resource: m.Body, Search: &fhir.EntrySearch{Mode: group.mode}})
		}
	}
	o.resource, err = json.Marshal(&set)
	if err != nil {
		return fmt.Errorf("bundle: searchset: %w", err)
	}
	return nil
}

func (p *Processor) fullURL(r *fhir.Resource) string {
	if p.BaseURL == "" {
		return ""
	}
	return strings.TrimRight(p.BaseURL, "/") + "/" + r.Type + "/" + r.ID
}

// response builds the response Bundle: one entry per request entry, in the same order.
func (p *Processor) response(typ string, ops []*op, failed []error) *fhir.Bundle {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	out := &fhir.Bundle{
		ResourceType: "Bundle",
		ID:           newID(),
		Meta:         &fhir.BundleMeta{LastUpdated: now().UTC().Format(fhir.TimeFormat)},
		Type:         typ,
		Entry:        make([]fhir.BundleEntry, len(ops)),
	}
	for i, o := range ops {
		e := &out.Entry[i]
		if o == nil {
			status, oo := fhir.OutcomeFromError(failed[i])
			e.Response = &fhir.EntryResponse{Status: statusLine(status), Outcome: fhir.MarshalOutcome(oo)}
			continue
		}
		e.Response = &fhir.EntryResponse{Status: statusLine(o.status)}
		e.Resource = o.resource
		if o.res != nil && o.method != http.MethodDelete {
			e.FullURL = p.fullURL(o.res)
			e.Response.Location = location(o.res)
			e.Response.Etag = o.res.ETag()
			e.Response.LastModified = o.res.LastUpdated.UTC().Format(fhir.TimeFormat)
		}
	}
	return out
}

// newID returns a random resource id: 32 hex digits (128 bits).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	const hexdigits = "0123456789abcdef"
	out := make([]byte, 32)
	for i, c := range b {
		out[2*i] = hexdigits[c>>4]
		out[2*i+1] = hexdigits[c&0xf]
	}
	return string(out)
}

// SearchParser returns a ParseFunc over search.Parse with strict handling: conditional criteria
// with a parameter this server does not know must fail, not match more than the client meant.
// maxCount caps _count in GET searches (0: no cap).
func SearchParser(reg *search.Registry, baseURL string, maxCount int) ParseFunc {
	return func(resourceType string, params url.Values) (*search.Query, error) {
		q, _, err := search.Parse(reg, []string{resourceType}, params, search.ParseOptions{BaseURL: baseURL, MaxCount: maxCount, Strict: true})
		return q, err
	}
}
