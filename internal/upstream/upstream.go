package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Options configures a Backend.
type Options struct {
	// BaseURL is the upstream FHIR base (https://fhir.example.org/R4).
	BaseURL string
	// Client sends the requests; it carries the upstream credentials (NewClient). Its own
	// Timeout is left alone; Timeout below bounds each interaction.
	Client *http.Client
	// Timeout bounds one upstream interaction (a slow upstream is answered 504); 30 s when 0.
	Timeout time.Duration
	// TrustTotals passes the upstream's Bundle.total on. Off by default: an upstream that ignores
	// a narrowing parameter would count what the caller may not see (the FHIR API drops a total
	// only when it held back a resource of the page it is writing).
	TrustTotals bool
	// MaxResponseBytes caps one upstream answer; 64 MiB when 0.
	MaxResponseBytes int64
	// Logger records upstream failures (never bodies or credentials).
	Logger *slog.Logger
	// Registry is the search parameter registry the FHIR API parses with; the resolution of
	// filtered chains (chains.go) extracts and matches with it. search.DefaultRegistry when nil.
	Registry *search.Registry
}

// Backend is a backend.Backend over an upstream FHIR server's REST API.
type Backend struct {
	opts Options
	base *url.URL
	// baseStr is the base without a trailing '/'.
	baseStr string
	// reg and matcher re-check the targets of filtered chains (chains.go).
	reg     *search.Registry
	matcher *search.Matcher
}

var _ backend.Backend = (*Backend)(nil)

// New checks the options and returns the Backend.
func New(opts Options) (*Backend, error) {
	u, err := url.Parse(strings.TrimRight(opts.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("upstream: the base URL must be an absolute http(s) URL without query, got %q", opts.BaseURL)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// Never follow redirects: a redirect could take the upstream credentials elsewhere.
	c := *opts.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	opts.Client = &c
	reg := opts.Registry
	if reg == nil {
		if reg, err = search.DefaultRegistry(); err != nil {
			return nil, err
		}
	}
	m, err := search.NewMatcher(reg)
	if err != nil {
		return nil, err
	}
	return &Backend{opts: opts, base: u, baseStr: u.String(), reg: reg, matcher: m}, nil
}

// BaseURL is the upstream FHIR base.
func (b *Backend) BaseURL() string { return b.baseStr }

// reply is an upstream answer read in full (bounded by MaxResponseBytes).
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the upstream. Transport failures become 502, a timeout 504; the
// status of the answer is the caller's to map (mapStatus).
func (b *Backend) do(ctx context.Context, method, target string, body []byte, header http.Header) (*reply, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	start := time.Now()
	resp, err := b.opts.Client.Do(req)
	if err != nil {
		return nil, b.transportError(ctx, method, err, start)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.opts.MaxResponseBytes+1))
	if err != nil {
		return nil, b.transportError(ctx, method, err, start)
	}
	if int64(len(data)) > b.opts.MaxResponseBytes {
		b.opts.Logger.WarnContext(ctx, "upstream answer too large", "method", method, "limit_bytes", b.opts.MaxResponseBytes)
		return nil, upstreamFailed("the upstream FHIR server's answer is larger than this server accepts")
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func (b *Backend) transportError(ctx context.Context, method string, err error, start time.Time) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		b.opts.Logger.WarnContext(ctx, "upstream timed out", "method", method, "upstream", b.base.Host, "after", time.Since(start).Round(time.Millisecond))
		e := fhir.Errorf(http.StatusGatewayTimeout, "timeout", "the upstream FHIR server did not answer in time")
		e.Cause = err
		return e
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	// The error names the upstream host, never credentials: the transport does not put them in
	// errors (a client_credentials failure is a *oauth2.RetrieveError without the secret).
	b.opts.Logger.WarnContext(ctx, "upstream unreachable", "method", method, "upstream", b.base.Host, "error", err)
	e := upstreamFailed("the upstream FHIR server is unreachable")
	e.Cause = err
	return e
}

// mapStatus turns an upstream error status into the error the FHIR API writes. 2xx is nil.
func (b *Backend) mapStatus(ctx context.Context, r *reply, typ, id string) error {
	switch {
	case r.status >= 200 && r.status < 300:
		return nil
	case r.status == http.StatusNotFound:
		return fmt.Errorf("%w: upstream %s/%s", fhir.ErrNotFound, typ, id)
	case r.status == http.StatusGone:
		return fmt.Errorf("%w: upstream %s/%s", fhir.ErrGone, typ, id)
	case r.status == http.StatusConflict || r.status == http.StatusPreconditionFailed:
		return fmt.Errorf("%w: upstream answered %d", fhir.ErrVersionConflict, r.status)
	case r.status == http.StatusBadRequest || r.status == http.StatusUnprocessableEntity:
		// The upstream's reason is about the request the client sent (a value, a resource);
		// its diagnostics are passed on, shortened.
		return fhir.Errorf(r.status, "invalid", "the upstream FHIR server refused the request: %s", diagnostics(r.body))
	case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden:
		b.opts.Logger.ErrorContext(ctx, "the upstream refused fhirgate's credentials", "status", r.status, "upstream", b.base.Host)
		return upstreamFailed("the upstream FHIR server refused this server's credentials")
	case r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable:
		return fhir.Errorf(http.StatusServiceUnavailable, "transient", "the upstream FHIR server is busy; try again later")
	case r.status == http.StatusGatewayTimeout:
		return fhir.Errorf(http.StatusGatewayTimeout, "timeout", "the upstream FHIR server did not answer in time")
	case r.status >= 500:
		b.opts.Logger.WarnContext(ctx, "upstream failed", "status", r.status, "upstream", b.base.Host)
		return upstreamFailed("the upstream FHIR server failed")
	default:
		b.opts.Logger.WarnContext(ctx, "unexpected upstream status", "status", r.status, "upstream", b.base.Host)
		return upstreamFailed(fmt.Sprintf("the upstream FHIR server answered %d", r.status))
	}
}

// diagnostics is the first issue of an OperationOutcome body, shortened; "" when there is none.
func diagnostics(body []byte) string {
	var oo struct {
		Issue []struct {
			Diagnostics string `json:"diagnostics"`
			Code        string `json:"code"`
		} `json:"issue"`
	}
	if json.Unmarshal(body, &oo) != nil || len(oo.Issue) == 0 {
		return "no reason given"
	}
	d := oo.Issue[0].Diagnostics
	if d == "" {
		d = oo.Issue[0].Code
	}
	if len(d) > 300 {
		d = d[:300] + "..."
	}
	return d
}

// url is the base joined with path segments (each escaped) and the query.
func (b *Backend) url(q url.Values, segs ...string) string {
	var sb strings.Builder
	sb.WriteString(b.baseStr)
	for _, s := range segs {
		sb.WriteByte('/')
		sb.WriteString(url.PathEscape(s))
	}
	if len(q) > 0 {
		sb.WriteByte('?')
		sb.WriteString(q.Encode())
	}
	return sb.String()
}

// resource decodes one resource answer, checking that it is the type (and id) asked for.
func (b *Backend) resource(body []byte, typ, id string) (*fhir.Resource, error) {
	res, err := b.decodeResource(body)
	if err != nil {
		return nil, err
	}
	if res.Type != typ || (id != "" && res.ID != id) {
		// Never name what came back: it may be a resource the caller may not see.
		b.opts.Logger.Warn("the upstream answered another resource than the one asked", "asked_type", typ, "answered_type", res.Type)
		return nil, upstreamFailed("the upstream FHIR server answered another resource than the one asked")
	}
	return res, nil
}

// decodeResource reads type, id, version and lastUpdated from a resource body. References to
// the upstream base in the body are made relative, so that they resolve against this server's
// base (and the compartment checks see them as local).
func (b *Backend) decodeResource(body []byte) (*fhir.Resource, error) {
	var h struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		Meta         struct {
			VersionID   string `json:"versionId"`
			LastUpdated string `json:"lastUpdated"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &h); err != nil || !fhir.IsResourceType(h.ResourceType) || !fhir.ValidID(h.ID) {
		return nil, upstreamFailed("the upstream FHIR server sent something that is not a FHIR resource")
	}
	res := &fhir.Resource{Type: h.ResourceType, ID: h.ID, Body: b.relativize(body)}
	if h.Meta.VersionID != "" {
		v, err := strconv.ParseInt(h.Meta.VersionID, 10, 64)
		if err != nil || v < 1 {
			return nil, upstreamFailed("the upstream FHIR server uses version ids that are not positive integers")
		}
		res.VersionID = v
	}
	if h.Meta.LastUpdated != "" {
		if t, err := time.Parse(time.RFC3339Nano, h.Meta.LastUpdated); err == nil {
			res.LastUpdated = t.UTC()
		}
	}
	return res, nil
}

// relativize rewrites every JSON string that starts with the upstream base + "/" to the part
// after it: "http://upstream/fhir/Patient/1" becomes "Patient/1".
func (b *Backend) relativize(body []byte) json.RawMessage {
	prefix := []byte(`"` + b.baseStr + `/`)
	if !bytes.Contains(body, prefix) {
		return body
	}
	return bytes.ReplaceAll(body, prefix, []byte(`"`))
}

// Read implements backend.Backend.
func (b *Backend) Read(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := b.do(ctx, http.MethodGet, b.url(nil, typ, id), nil, nil)
	if err != nil {
		return nil, err
	}
	if err := b.mapStatus(ctx, r, typ, id); err != nil {
		return nil, err
	}
	return b.resource(r.body, typ, id)
}

// VRead implements backend.Backend.
func (b *Backend) VRead(ctx context.Context, typ, id string, version int64) (*fhir.Resource, error) {
	r, err := b.do(ctx, http.MethodGet, b.url(nil, typ, id, "_history", strconv.FormatInt(version, 10)), nil, nil)
	if err != nil {
		return nil, err
	}
	if err := b.mapStatus(ctx, r, typ, id); err != nil {
		return nil, err
	}
	return b.resource(r.body, typ, id)
}

// writeHeader asks for the stored resource in the answer.
func writeHeader() http.Header {
	return http.Header{"Prefer": {"return=representation"}}
}

// Create implements backend.Backend. If-None-Exist is passed to the upstream, which decides it
// atomically; an explicit id (imports) is refused, as FHIR has no create-with-id.
func (b *Backend) Create(ctx context.Context, typ string, body []byte, opts backend.CreateOptions) (*fhir.Resource, bool, error) {
	if opts.ID != "" {
		return nil, false, fhir.Errorf(http.StatusNotImplemented, "not-supported", "creating a resource with a chosen id is not supported on an upstream FHIR server")
	}
	h := writeHeader()
	if opts.IfNoneExist != nil {
		params, err := encodeParams(opts.IfNoneExist)
		if err != nil {
			return nil, false, err
		}
		params.Del("_count")
		h.Set("If-None-Exist", params.Encode())
	}
	r, err := b.do(ctx, http.MethodPost, b.url(nil, typ), body, h)
	if err != nil {
		return nil, false, err
	}
	if r.status == http.StatusPreconditionFailed && opts.IfNoneExist != nil {
		return nil, false, fmt.Errorf("%w: upstream", fhir.ErrMultipleMatches)
	}
	if err := b.mapStatus(ctx, r, typ, ""); err != nil {
		return nil, false, err
	}
	res, err := b.written(ctx, r, typ, "")
	return res, r.status == http.StatusCreated, err
}

// written is the resource of a write answer: the body, or a read of the Location when the
// upstream ignored Prefer: return=representation.
func (b *Backend) written(ctx context.Context, r *reply, typ, id string) (*fhir.Resource, error) {
	if len(bytes.TrimSpace(r.body)) > 0 {
		if res, err := b.resource(r.body, typ, id); err == nil {
			return res, nil
		}
	}
	loc := r.header.Get("Location")
	if loc == "" {
		loc = r.header.Get("Content-Location")
	}
	if loc == "" {
		return nil, upstreamFailed("the upstream FHIR server did not say what it stored")
	}
	target, err := b.nextOnBase(loc)
	if err != nil {
		return nil, err
	}
	rr, err := b.do(ctx, http.MethodGet, target, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := b.mapStatus(ctx, rr, typ, id); err != nil {
		return nil, err
	}
	return b.resource(rr.body, typ, id)
}

// Update implements backend.Backend; IfMatch is sent as If-Match.
func (b *Backend) Update(ctx context.Context, typ, id string, body []byte, opts backend.UpdateOptions) (*fhir.Resource, bool, error) {
	h := writeHeader()
	if opts.IfMatch > 0 {
		h.Set("If-Match", `W/"`+strconv.FormatInt(opts.IfMatch, 10)+`"`)
	}
	r, err := b.do(ctx, http.MethodPut, b.url(nil, typ, id), body, h)
	if err != nil {
		return nil, false, err
	}
	if err := b.mapStatus(ctx, r, typ, id); err != nil {
		return nil, false, err
	}
	res, err := b.written(ctx, r, typ, id)
	return res, r.status == http.StatusCreated, err
}

// Delete implements backend.Backend. The upstream says nothing of the delete's version, so the
// result is nil (as for a resource that was already gone).
func (b *Backend) Delete(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	r, err := b.do(ctx, http.MethodDelete, b.url(nil, typ, id), nil, nil)
	if err != nil {
		return nil, err
	}
	if r.status == http.StatusNotFound || r.status == http.StatusGone {
		return nil, nil
	}
	if err := b.mapStatus(ctx, r, typ, id); err != nil {
		return nil, err
	}
	v, ok := parseETag(r.header.Get("ETag"))
	if !ok {
		// The upstream did not say which version the delete made (many servers do not).
		return nil, nil
	}
	return &fhir.Resource{Type: typ, ID: id, VersionID: v, Deleted: true, LastUpdated: time.Now().UTC()}, nil
}

// parseETag reads a version ETag, W/"3" or "3".
func parseETag(tag string) (int64, bool) {
	tag = strings.Trim(strings.TrimPrefix(strings.TrimSpace(tag), "W/"), `"`)
	v, err := strconv.ParseInt(tag, 10, 64)
	return v, err == nil && v > 0
}

// bundle is the part of an upstream Bundle the backend reads.
type bundle struct {
	ResourceType string `json:"resourceType"`
	Total        *int   `json:"total"`
	Link         []struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	} `json:"link"`
	Entry []struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   *struct {
			Mode string `json:"mode"`
		} `json:"search"`
		Request *struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"request"`
		Response *struct {
			Etag         string `json:"etag"`
			LastModified string `json:"lastModified"`
		} `json:"response"`
	} `json:"entry"`
}

func (b *Backend) decodeBundle(body []byte) (*bundle, error) {
	var bd bundle
	if err := json.Unmarshal(body, &bd); err != nil || bd.ResourceType != "Bundle" {
		return nil, upstreamFailed("the upstream FHIR server did not answer with a Bundle")
	}
	return &bd, nil
}

func (bd *bundle) next() string {
	for _, l := range bd.Link {
		if l.Relation == "next" {
			return l.URL
		}
	}
	return ""
}

// Search implements backend.Backend. A search over one type (in a compartment or not) or over
// several types without a compartment is one upstream search; several types in a compartment
// (which FHIR cannot say in one request) are searched one type after the other, paging through
// each, and carry no total.
func (b *Backend) Search(ctx context.Context, q *search.Query) (*search.Result, error) {
	if len(q.Types) == 0 {
		return nil, errors.New("upstream: a search without types")
	}
	perType := q.Compartment != nil && len(q.Types) > 1
	if perType && len(q.Sort) > 0 {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", "_sort over several types in a compartment is not supported on an upstream FHIR server")
	}
	var cur cursor
	if q.Cursor != "" {
		var err error
		if cur, err = decodeCursor(q.Cursor); err != nil {
			return nil, err
		}
		if cur.Type >= len(q.Types) || (!perType && cur.Type != 0) {
			return nil, fhir.Invalid("_page", "the page link is not valid for this search; start the search again")
		}
	}
	// A patient's Consent narrows a search across patients with a reference :not clause,
	// which is not R4 search syntax: it is applied here, on every page, to what the upstream
	// returns (pages may then hold fewer matches, and no total is passed on).
	local, q := localClauses(q)
	if len(local) > 0 && q.Summary == search.SummaryCount {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported",
			"counting across patients whose Consents restrict this user is not supported in proxy mode; search one patient's data")
	}
	// params are encoded when a search of a type starts, not for a page that follows an
	// upstream next link: that link carries the query, filtered links resolved.
	var params url.Values
	out := &search.Result{}
	for {
		target := cur.Next
		var err error
		if target != "" {
			if target, err = b.nextOnBase(target); err != nil {
				return nil, err
			}
		} else {
			if params == nil {
				rq, none, err := b.resolveChains(ctx, q)
				if err != nil {
					return nil, err
				}
				if none {
					// A filtered link matches nothing: so does the search, on every type.
					zero := 0
					return &search.Result{Total: &zero}, nil
				}
				if params, err = encodeParams(rq); err != nil {
					return nil, err
				}
			}
			target = b.searchURL(q, params, perType, cur.Type)
		}
		r, err := b.do(ctx, http.MethodGet, target, nil, nil)
		if err != nil {
			return nil, err
		}
		if err := b.mapStatus(ctx, r, "", ""); err != nil {
			if errors.Is(err, fhir.ErrNotFound) {
				return nil, upstreamFailed("the upstream FHIR server does not know this search")
			}
			return nil, err
		}
		bd, err := b.decodeBundle(r.body)
		if err != nil {
			return nil, err
		}
		for _, e := range bd.Entry {
			if len(e.Resource) == 0 {
				continue
			}
			mode := "match"
			if e.Search != nil && e.Search.Mode != "" {
				mode = e.Search.Mode
			}
			if mode == "outcome" {
				continue
			}
			res, err := b.decodeResource(e.Resource)
			if err != nil {
				return nil, err
			}
			if mode == "include" {
				out.Included = append(out.Included, res)
				continue
			}
			if len(local) > 0 {
				ok, err := b.matcher.Matches(res.Type, res.Body, local)
				if err != nil {
					return nil, fmt.Errorf("upstream: applying a Consent's exclusion: %w", err)
				}
				if !ok {
					continue
				}
			}
			out.Matches = append(out.Matches, res)
		}
		if !perType && b.opts.TrustTotals && len(local) == 0 {
			out.Total = bd.Total
		}
		next := bd.next()
		switch {
		case next != "":
			out.Next = cursor{Type: cur.Type, Next: next}.encode()
		case perType && cur.Type+1 < len(q.Types):
			cur = cursor{Type: cur.Type + 1}
			if len(out.Matches)+len(out.Included) == 0 && q.Summary != search.SummaryCount {
				// Nothing of this type: go on with the next one in the same page.
				continue
			}
			out.Next = cur.encode()
		}
		return out, nil
	}
}

// searchURL is the first upstream request of a search (of Types[typeIndex] when per type).
func (b *Backend) searchURL(q *search.Query, params url.Values, perType bool, typeIndex int) string {
	switch {
	case perType:
		return b.url(params, q.Compartment.Type, q.Compartment.ID, q.Types[typeIndex])
	case q.Compartment != nil:
		return b.url(params, q.Compartment.Type, q.Compartment.ID, q.Types[0])
	case len(q.Types) == 1:
		return b.url(params, q.Types[0])
	default:
		p := url.Values{}
		for k, v := range params {
			p[k] = v
		}
		p.Set("_type", strings.Join(q.Types, ","))
		return b.url(p)
	}
}

// History implements backend.Backend.
func (b *Backend) History(ctx context.Context, hq backend.HistoryQuery) (*backend.HistoryPage, error) {
	var target string
	if hq.Cursor != "" {
		cur, err := decodeCursor(hq.Cursor)
		if err != nil {
			return nil, err
		}
		if target, err = b.nextOnBase(cur.Next); err != nil {
			return nil, err
		}
	} else {
		params := url.Values{}
		if hq.Count > 0 {
			params.Set("_count", strconv.Itoa(hq.Count))
		}
		if !hq.Since.IsZero() {
			params.Set("_since", hq.Since.UTC().Format(time.RFC3339Nano))
		}
		var segs []string
		if hq.Type != "" {
			segs = append(segs, hq.Type)
		}
		if hq.ID != "" {
			segs = append(segs, hq.ID)
		}
		target = b.url(params, append(segs, "_history")...)
	}
	r, err := b.do(ctx, http.MethodGet, target, nil, nil)
	if err != nil {
		return nil, err
	}
	if err := b.mapStatus(ctx, r, hq.Type, hq.ID); err != nil {
		return nil, err
	}
	bd, err := b.decodeBundle(r.body)
	if err != nil {
		return nil, err
	}
	page := &backend.HistoryPage{}
	if b.opts.TrustTotals {
		page.Total = bd.Total
	}
	for _, e := range bd.Entry {
		he := &backend.HistoryEntry{Method: http.MethodPut}
		if e.Request != nil && e.Request.Method != "" {
			he.Method = strings.ToUpper(e.Request.Method)
		}
		if len(e.Resource) > 0 {
			res, err := b.decodeResource(e.Resource)
			if err != nil {
				return nil, err
			}
			he.Resource = res
		} else {
			// A delete: the entry names the resource in its request URL (Type/id[/_history/n]).
			ref := ""
			if e.Request != nil {
				ref = e.Request.URL
			}
			typ, rest, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(ref, b.baseStr), "/"), "/")
			id, ver, _ := strings.Cut(rest, "/_history/")
			if !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
				continue
			}
			v, _ := strconv.ParseInt(ver, 10, 64)
			del := &fhir.Resource{Type: typ, ID: id, VersionID: v, Deleted: true}
			if e.Response != nil {
				if ev, ok := parseETag(e.Response.Etag); ok {
					del.VersionID = ev
				}
				if t, err := time.Parse(time.RFC3339Nano, e.Response.LastModified); err == nil {
					del.LastUpdated = t.UTC()
				}
			}
			he.Resource = del
			he.Method = http.MethodDelete
		}
		page.Entries = append(page.Entries, he)
	}
	if next := bd.next(); next != "" {
		page.Next = cursor{Next: next}.encode()
	}
	return page, nil
}

// InTx implements backend.Backend. The upstream's REST API has no transaction across
// interactions, and a write sent upstream cannot be rolled back when a later step fails, so fn
// runs with a Backend that reads and searches but refuses every write (ErrNotAtomic) before
// anything is sent: a transaction Bundle with writes fails whole with nothing applied, and a
// batch's write entries fail on their own. Single REST writes are not in a transaction and go
// through.
func (b *Backend) InTx(_ context.Context, fn func(tx backend.Backend) error) error {
	return fn(readOnly{b})
}

// ErrNotAtomic is what a write inside InTx returns.
var ErrNotAtomic = fhir.Errorf(http.StatusNotImplemented, "not-supported", "the upstream FHIR server cannot apply writes inside a batch or transaction atomically; send each write as its own request")

// readOnly is the Backend of an InTx.
type readOnly struct{ *Backend }

func (readOnly) Create(context.Context, string, []byte, backend.CreateOptions) (*fhir.Resource, bool, error) {
	return nil, false, ErrNotAtomic
}

func (readOnly) Update(context.Context, string, string, []byte, backend.UpdateOptions) (*fhir.Resource, bool, error) {
	return nil, false, ErrNotAtomic
}

func (readOnly) Delete(context.Context, string, string) (*fhir.Resource, error) {
	return nil, ErrNotAtomic
}

func (t readOnly) InTx(_ context.Context, fn func(tx backend.Backend) error) error { return fn(t) }

// localClauses splits off the clauses of q that are applied to the upstream's answer instead of
// being sent (reference :not, see Search); q is returned as a copy without them.
func localClauses(q *search.Query) (local []search.Clause, sent *search.Query) {
	var keep []search.Clause
	for _, c := range q.Clauses {
		if isReferenceNot(c) {
			local = append(local, c)
		} else {
			keep = append(keep, c)
		}
	}
	if len(local) == 0 {
		return nil, q
	}
	cp := *q
	cp.Clauses = keep
	return local, &cp
}
