package fhirapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Validator checks a resource before it is stored.
type Validator interface {
	Validate(resourceType string, body []byte) error
}

// Options configures the API.
type Options struct {
	// Backend stores and finds resources.
	Backend backend.Backend
	// Registry defines the search parameters.
	Registry *search.Registry
	// Validator checks every write.
	Validator Validator
	// Authenticator verifies access tokens; required.
	Authenticator Authenticator
	// Policy decides every interaction; required.
	Policy Policy
	// Observe, when set, is told of every access decision.
	Observe DecisionObserver
	// Audit, when set, records one event per request, before the response is sent.
	Audit audit.Recorder
	// AuditLog, when set, serves AuditEvent reads and searches from the audit trail (and
	// refuses writes of AuditEvents).
	AuditLog AuditLog
	// AuditorRole is the role a token must carry to read the audit trail; "auditor" when empty.
	AuditorRole string
	// Bundles processes POST of batch/transaction Bundles to the base; nil answers 501. Each
	// request runs a copy whose Authorize asks Policy about every entry.
	Bundles *bundle.Processor
	// BaseURL is the FHIR base, e.g. http://localhost:8080/fhir.
	BaseURL string
	// DefaultCount and MaxCount bound search page sizes.
	DefaultCount, MaxCount int
	// PageKey signs paging links; random when empty (links then die with the process).
	PageKey []byte
	// MaxBodyBytes caps a request body; 16 MiB when zero.
	MaxBodyBytes int64
	// Limits bound the shape and cost of searches; zero values impose none.
	Limits Limits
	// Security is the CapabilityStatement rest.security element, if an authorization server
	// protects this API.
	Security json.RawMessage
	// Software names this server in the CapabilityStatement.
	Software, Version string
	// Now is the clock.
	Now func() time.Time
	// Logger logs internal errors with the request id.
	Logger *slog.Logger
}

// API serves the FHIR REST interactions.
type API struct {
	opts  Options
	pages pageSigner
	mux   *http.ServeMux
	// capability is the CapabilityStatement, built once.
	capability []byte
}

// New builds the API.
func New(opts Options) (*API, error) {
	if opts.Backend == nil || opts.Registry == nil || opts.Validator == nil || opts.Authenticator == nil || opts.Policy == nil {
		return nil, errors.New("fhirapi: Backend, Registry, Validator, Authenticator and Policy are required")
	}
	if opts.BaseURL == "" {
		return nil, errors.New("fhirapi: BaseURL is required")
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	if opts.DefaultCount <= 0 {
		opts.DefaultCount = 50
	}
	if opts.MaxCount < opts.DefaultCount {
		opts.MaxCount = max(opts.DefaultCount, 1000)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 16 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuditorRole == "" {
		opts.AuditorRole = DefaultAuditorRole
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if len(opts.PageKey) == 0 {
		opts.PageKey = make([]byte, 32)
		_, _ = rand.Read(opts.PageKey)
	}
	a := &API{opts: opts, pages: pageSigner{key: opts.PageKey}}
	capability, err := a.buildCapabilityStatement()
	if err != nil {
		return nil, err
	}
	a.capability = capability
	a.mux = http.NewServeMux()
	a.routes()
	return a, nil
}

// ServeHTTP serves requests under /fhir.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handlerFunc is an endpoint that returns its error instead of writing it.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (a *API) routes() {
	h := func(pattern string, action audit.Action, fn handlerFunc) {
		a.mux.Handle(pattern, a.adapt(action, fn))
	}
	h("GET /fhir/metadata", audit.ActionCapabilities, a.metadata)
	h("GET /fhir", audit.ActionSearchSystem, a.searchSystem)
	h("GET /fhir/{$}", audit.ActionSearchSystem, a.searchSystem)
	h("POST /fhir", audit.ActionTransaction, a.postBundle)
	h("POST /fhir/{$}", audit.ActionTransaction, a.postBundle)
	h("GET /fhir/_history", audit.ActionHistorySystem, a.historySystem)
	h("GET /fhir/{type}", audit.ActionSearchType, a.searchType)
	h("POST /fhir/{type}/_search", audit.ActionSearchType, a.searchTypePost)
	h("POST /fhir/{type}", audit.ActionCreate, a.create)
	h("GET /fhir/{type}/_history", audit.ActionHistoryType, a.historyType)
	h("GET /fhir/{type}/{id}", audit.ActionRead, a.read)
	h("PUT /fhir/{type}/{id}", audit.ActionUpdate, a.update)
	h("DELETE /fhir/{type}/{id}", audit.ActionDelete, a.delete)
	h("GET /fhir/{type}/{id}/_history", audit.ActionHistoryInstance, a.historyInstance)
	h("GET /fhir/{type}/{id}/_history/{vid}", audit.ActionVRead, a.vread)
	h("GET /fhir/{type}/{id}/{compartmentType}", audit.ActionSearchType, a.searchCompartment)
	h("/fhir/", audit.ActionOperation, func(w http.ResponseWriter, r *http.Request) error {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "%s %s is not a FHIR interaction this server supports", r.Method, r.URL.Path)
	})
}

// adapt turns an endpoint into an http.Handler: content negotiation, authentication, the
// endpoint, its error written once as an OperationOutcome, and one audit event for the request.
// With an audit trail the response is held until the event is recorded, so that no access is
// served unrecorded: a trail that cannot record answers 503 instead.
func (a *API) adapt(action audit.Action, fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &requestState{action: action, start: a.opts.Now(), count: -1}
		r = r.WithContext(context.WithValue(r.Context(), requestStateKey{}, st))
		out := w
		var held *heldResponse
		if a.opts.Audit != nil {
			held = newHeldResponse()
			out = held
		}
		err := negotiate(r)
		if err == nil {
			r, err = a.authenticate(out, r)
		}
		if err == nil {
			err = a.runBounded(out, r, fn)
		}
		if err != nil {
			a.writeError(out, r, err)
		}
		if held == nil {
			return
		}
		if err := a.record(r, st, held.status()); err != nil {
			a.opts.Logger.ErrorContext(r.Context(), "audit trail unavailable: request refused", "error", err)
			writeJSON(w, http.StatusServiceUnavailable, fhir.MarshalOutcome(fhir.Errorf(http.StatusServiceUnavailable, "transient", "the request could not be recorded in the audit trail; try again").Outcome()))
			return
		}
		held.flush(w)
	})
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *fhir.Error
	if typ, id := r.PathValue("type"), r.PathValue("id"); id != "" && errors.Is(err, fhir.ErrNotFound) && !errors.As(err, &fe) {
		// The same answer as a refusal of a resource the caller may not see (refused, denial),
		// so that the two cannot be told apart.
		err = fhir.NotFound(typ, id)
	}
	status, oo := fhir.OutcomeFromError(err)
	if status >= 500 {
		a.opts.Logger.ErrorContext(r.Context(), "fhir request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeJSON(w, status, fhir.MarshalOutcome(oo))
}

const fhirJSON = "application/fhir+json"

// negotiate accepts JSON and refuses XML (415), for the body, Accept and _format alike.
func negotiate(r *http.Request) error {
	if f := r.URL.Query().Get("_format"); f != "" {
		switch strings.ToLower(f) {
		case "json", fhirJSON, "application/json", "application/json+fhir":
		case "xml", "application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir":
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "XML is not supported: this server speaks application/fhir+json")
		default:
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "_format %q is not supported: use json", f)
		}
	} else if accept := r.Header.Get("Accept"); accept != "" && !acceptsJSON(accept) {
		return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Accept %q is not supported: this server speaks application/fhir+json", accept)
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		ct := r.Header.Get("Content-Type")
		if strings.HasSuffix(r.URL.Path, "/_search") {
			return nil // form-encoded search parameters
		}
		mt, _, err := mime.ParseMediaType(ct)
		if ct != "" && err != nil {
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type %q is not valid", ct)
		}
		switch mt {
		case fhirJSON, "application/json", "application/json+fhir", "":
		case "application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir":
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "XML is not supported: send application/fhir+json")
		default:
			return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "Content-Type %q is not supported: send application/fhir+json", mt)
		}
	}
	return nil
}

func acceptsJSON(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case fhirJSON, "application/json", "application/json+fhir", "*/*", "application/*":
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", fhirJSON+"; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readBody reads a request body up to the configured limit.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "the request body is larger than %d bytes", a.opts.MaxBodyBytes)
	}
	if err != nil {
		return nil, fhir.Invalid("", "the request body could not be read")
	}
	return body, nil
}

// checkType answers 404 for a path segment that is not an R4 resource type.
func checkType(typ string) error {
	if !fhir.IsResourceType(typ) {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "%q is not a FHIR R4 resource type", typ)
	}
	return nil
}

func checkID(id string) error {
	if !fhir.ValidID(id) {
		return fhir.Invalid("", "%q is not a valid resource id", id)
	}
	return nil
}

// marshal encodes a response body without HTML escaping, so URLs in links keep their '&'.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
