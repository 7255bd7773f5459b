package fhirapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

func (a *API) read(w http.ResponseWriter, r *http.Request) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if err := checkType(typ); err != nil {
		return err
	}
	if strings.HasPrefix(id, "$") {
		if _, err := a.authorize(r, policy.Input{Interaction: policy.Operation, Type: typ, Operation: id}); err != nil {
			return err
		}
		return fhir.Errorf(http.StatusNotImplemented, "not-supported", "operation %s is not supported on %s", id, typ)
	}
	if err := checkID(id); err != nil {
		return err
	}
	if a.servesAuditTrail(typ) {
		return a.auditRead(w, r, id)
	}
	// The scope check runs before the store is touched; the body check after.
	d, err := a.authorize(r, policy.Input{Interaction: policy.Read, Type: typ, ID: id})
	if err != nil {
		return err
	}
	res, err := a.opts.Backend.Read(r.Context(), typ, id)
	if err != nil {
		if errors.Is(err, fhir.ErrGone) && !a.goneVisible(r, d, res) {
			return refused(d, typ, id)
		}
		return a.goneWithHeaders(w, res, err)
	}
	if !a.visible(r, d, res) {
		return refused(d, typ, id)
	}
	touched(r, res)
	returned(r, 1)
	if notModified(w, r, res) {
		return nil
	}
	return a.writeShaped(w, r, res)
}

// writeShaped answers a read with _summary or _elements applied when the request asks for them.
func (a *API) writeShaped(w http.ResponseWriter, r *http.Request, res *fhir.Resource) error {
	q := r.URL.Query()
	var elements []string
	for _, v := range q["_elements"] {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				elements = append(elements, e)
			}
		}
	}
	mode := q.Get("_summary")
	switch mode {
	case "", "false", "true", "text", "data":
	default:
		return fhir.Invalid("_summary", "_summary on a read must be true, text, data or false, got %q", mode)
	}
	body, err := shape(res, mode, elements)
	if err != nil {
		return err
	}
	setVersionHeaders(w, res)
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (a *API) vread(w http.ResponseWriter, r *http.Request) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if err := checkType(typ); err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	vid, err := strconv.ParseInt(r.PathValue("vid"), 10, 64)
	if err != nil || vid < 1 {
		return fhir.Invalid("", "%q is not a version id", r.PathValue("vid"))
	}
	d, err := a.authorize(r, policy.Input{Interaction: policy.VRead, Type: typ, ID: id})
	if err != nil {
		return err
	}
	res, err := a.opts.Backend.VRead(r.Context(), typ, id, vid)
	if err != nil {
		if errors.Is(err, fhir.ErrGone) && !a.goneVisible(r, d, res) {
			return refused(d, typ, id)
		}
		return a.goneWithHeaders(w, res, err)
	}
	if !a.visible(r, d, res) {
		return refused(d, typ, id)
	}
	touched(r, res)
	returned(r, 1)
	a.writeResource(w, http.StatusOK, res)
	return nil
}

// goneVisible decides whether the caller may learn that a resource was deleted: only when it
// could see the version before the delete. Otherwise the answer is 404, as for any resource it may
// not see.
func (a *API) goneVisible(r *http.Request, d policy.Decision, deleted *fhir.Resource) bool {
	body, err := a.bodyBeforeDelete(r, deleted)
	return err == nil && body != nil && a.visible(r, d, &fhir.Resource{Type: deleted.Type, ID: deleted.ID, Body: body})
}

// goneWithHeaders adds the version headers of a deleted resource to its 410.
func (a *API) goneWithHeaders(w http.ResponseWriter, res *fhir.Resource, err error) error {
	if errors.Is(err, fhir.ErrGone) && res != nil {
		w.Header().Set("ETag", res.ETag())
		w.Header().Set("Last-Modified", res.LastUpdated.Format(http.TimeFormat))
	}
	return err
}

// notModified answers 304 for a matching If-None-Match or a fresh If-Modified-Since.
func notModified(w http.ResponseWriter, r *http.Request, res *fhir.Resource) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for tag := range strings.SplitSeq(inm, ",") {
			if t := strings.TrimSpace(tag); t == res.ETag() || t == strings.TrimPrefix(res.ETag(), "W/") || t == "*" {
				setVersionHeaders(w, res)
				w.WriteHeader(http.StatusNotModified)
				return true
			}
		}
		return false
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !res.LastUpdated.Truncate(1e9).After(t) {
			setVersionHeaders(w, res)
			w.WriteHeader(http.StatusNotModified)
			return true
		}
	}
	return false
}

func setVersionHeaders(w http.ResponseWriter, res *fhir.Resource) {
	w.Header().Set("ETag", res.ETag())
	w.Header().Set("Last-Modified", res.LastUpdated.Format(http.TimeFormat))
}

func (a *API) writeResource(w http.ResponseWriter, status int, res *fhir.Resource) {
	setVersionHeaders(w, res)
	writeJSON(w, status, res.Body)
}

func (a *API) create(w http.ResponseWriter, r *http.Request) error {
	typ := r.PathValue("type")
	if err := checkType(typ); err != nil {
		return err
	}
	if a.servesAuditTrail(typ) {
		return refuseAuditWrite()
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if err := a.checkWrite(typ, "", body); err != nil {
		return err
	}
	d, err := a.authorize(r, policy.Input{Interaction: policy.Create, Type: typ, Resource: body})
	if err != nil {
		return err
	}
	opts := backend.CreateOptions{}
	var match policy.Decision
	if ine := r.Header.Get("If-None-Exist"); ine != "" {
		q, err := a.parseCriteria(typ, ine)
		if err != nil {
			return err
		}
		// The match is a search: decided and narrowed as one, so that it can only find what the
		// caller may see (otherwise 200, 412 or a refusal would tell that another patient's
		// resource matches, and a create-only token could read it back).
		if match, err = a.authorizeCriteria(r, typ, q); err != nil {
			return err
		}
		opts.IfNoneExist = q
	}
	res, created, err := a.opts.Backend.Create(r.Context(), typ, body, opts)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if !created {
		// Defence in depth: the narrowed criteria should never match a resource the caller
		// may not see.
		if !a.visible(r, d, res) || !a.visible(r, match, res) {
			return fhir.Errorf(http.StatusForbidden, "forbidden", "the access token does not allow this request")
		}
		status = http.StatusOK
	}
	touched(r, res)
	a.writeWriteResult(w, r, status, res)
	return nil
}

func (a *API) update(w http.ResponseWriter, r *http.Request) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if err := checkType(typ); err != nil {
		return err
	}
	if a.servesAuditTrail(typ) {
		return refuseAuditWrite()
	}
	if err := checkID(id); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if err := a.checkWrite(typ, id, body); err != nil {
		return err
	}
	var clientMatch int64
	if im := r.Header.Get("If-Match"); im != "" {
		v, ok := parseETag(im)
		if !ok {
			return fhir.Invalid("", "If-Match %q is not a version ETag such as W/\"3\"", im)
		}
		clientMatch = v
	}
	// The policy decides on the stored body read here; the write is made conditional on that
	// version, so that a concurrent write (which may have moved the resource to another
	// patient) cannot slip in between the decision and the write. Losing that race reads and
	// decides again.
	var (
		res     *fhir.Resource
		created bool
	)
	for attempt := 1; ; attempt++ {
		cur, err := a.current(r, typ, id)
		if err != nil {
			return err
		}
		in := policy.Input{Interaction: policy.Update, Type: typ, ID: id, Resource: body}
		opts := backend.UpdateOptions{IfMatch: clientMatch}
		if cur != nil {
			in.Current = cur.Body
			if opts.IfMatch == 0 {
				opts.IfMatch = cur.VersionID
			}
		}
		if _, err := a.authorize(r, in); err != nil {
			return err
		}
		res, created, err = a.opts.Backend.Update(r.Context(), typ, id, body, opts)
		if err == nil {
			break
		}
		if !errors.Is(err, fhir.ErrVersionConflict) || clientMatch != 0 || attempt == maxDecideAttempts {
			return err
		}
	}
	touched(r, res)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	a.writeWriteResult(w, r, status, res)
	return nil
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if err := checkType(typ); err != nil {
		return err
	}
	if a.servesAuditTrail(typ) {
		return refuseAuditWrite()
	}
	if err := checkID(id); err != nil {
		return err
	}
	// Deletes are idempotent: deleting a deleted resource again is decided on its last body, so
	// that a caller who could see it before the delete gets 204 again.
	var current []byte
	cur, err := a.opts.Backend.Read(r.Context(), typ, id)
	switch {
	case err == nil:
		current = cur.Body
	case errors.Is(err, fhir.ErrGone):
		if current, err = a.bodyBeforeDelete(r, cur); err != nil {
			return err
		}
	case !errors.Is(err, fhir.ErrNotFound):
		return err
	}
	if _, err := a.authorize(r, policy.Input{Interaction: policy.Delete, Type: typ, ID: id, Current: current}); err != nil {
		return err
	}
	res, err := a.opts.Backend.Delete(r.Context(), typ, id)
	if err != nil {
		return err
	}
	if res != nil {
		w.Header().Set("ETag", res.ETag())
		touched(r, &fhir.Resource{Type: typ, ID: id, Body: current})
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// maxDecideAttempts bounds how often an update reads, decides and writes again when a concurrent
// write changed the resource in between.
const maxDecideAttempts = 3

// current is the stored version an update or delete replaces, nil when there is none; the policy
// checks that the caller may touch it.
func (a *API) current(r *http.Request, typ, id string) (*fhir.Resource, error) {
	cur, err := a.opts.Backend.Read(r.Context(), typ, id)
	switch {
	case err == nil:
		return cur, nil
	case errors.Is(err, fhir.ErrNotFound), errors.Is(err, fhir.ErrGone):
		return nil, nil
	}
	return nil, err
}

// bodyBeforeDelete is the last body of a deleted resource (nil when there is none).
func (a *API) bodyBeforeDelete(r *http.Request, deleted *fhir.Resource) ([]byte, error) {
	if deleted == nil || deleted.VersionID < 2 {
		return nil, nil
	}
	prev, err := a.opts.Backend.VRead(r.Context(), deleted.Type, deleted.ID, deleted.VersionID-1)
	switch {
	case err == nil:
		return prev.Body, nil
	case errors.Is(err, fhir.ErrNotFound), errors.Is(err, fhir.ErrGone):
		return nil, nil
	}
	return nil, err
}

// checkWrite validates a body for typ (and, for an update, its id).
func (a *API) checkWrite(typ, id string, body []byte) error {
	h, err := fhir.DecodeHeader(body)
	if err != nil {
		return err
	}
	if h.ResourceType != typ {
		return fhir.Invalid("resourceType", "the body is a %s but the URL says %s", h.ResourceType, typ)
	}
	if id != "" {
		if h.ID == "" {
			return fhir.Invalid(typ+".id", "an update must carry the id of the URL in the body")
		}
		if h.ID != id {
			return fhir.Invalid(typ+".id", "the body's id %q is not the URL's id %q", h.ID, id)
		}
	}
	return a.opts.Validator.Validate(typ, body)
}

// writeWriteResult answers a create or update as the Prefer header asks (representation by
// default).
func (a *API) writeWriteResult(w http.ResponseWriter, r *http.Request, status int, res *fhir.Resource) {
	w.Header().Set("Location", a.opts.BaseURL+"/"+res.Type+"/"+res.ID+"/_history/"+strconv.FormatInt(res.VersionID, 10))
	setVersionHeaders(w, res)
	switch preferReturn(r) {
	case "minimal":
		w.WriteHeader(status)
	case "OperationOutcome":
		oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: []fhir.Issue{{
			Severity: "information", Code: "informational",
			Diagnostics: "stored " + res.Type + "/" + res.ID + " version " + strconv.FormatInt(res.VersionID, 10),
		}}}
		writeJSON(w, status, fhir.MarshalOutcome(oo))
	default:
		writeJSON(w, status, res.Body)
	}
}

func preferReturn(r *http.Request) string {
	for _, p := range r.Header.Values("Prefer") {
		for part := range strings.SplitSeq(p, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && strings.EqualFold(k, "return") {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// parseETag reads W/"3", "3" or 3.
func parseETag(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.Trim(s, `"`)
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}
