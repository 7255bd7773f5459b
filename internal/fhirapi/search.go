package fhirapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/summary"
	"github.com/fhirgate/fhirgate/internal/policy"
)

func (a *API) searchType(w http.ResponseWriter, r *http.Request) error {
	typ := r.PathValue("type")
	if err := checkType(typ); err != nil {
		return err
	}
	if a.servesAuditTrail(typ) {
		return a.auditSearch(w, r, r.URL.Query())
	}
	return a.runSearch(w, r, policy.SearchType, []string{typ}, nil, r.URL.Query())
}

// searchTypePost is POST {type}/_search: parameters in a form body (and the URL), same results as
// GET.
func (a *API) searchTypePost(w http.ResponseWriter, r *http.Request) error {
	typ := r.PathValue("type")
	if err := checkType(typ); err != nil {
		return err
	}
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return fhir.Errorf(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes application/x-www-form-urlencoded parameters")
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			return fhir.Errorf(http.StatusRequestEntityTooLarge, "too-costly", "the request body is larger than %d bytes", a.opts.MaxBodyBytes)
		}
		return fhir.Invalid("", "the search form could not be read: %v", err)
	}
	if a.servesAuditTrail(typ) {
		return a.auditSearch(w, r, r.Form)
	}
	return a.runSearch(w, r, policy.SearchType, []string{typ}, nil, r.Form)
}

// searchSystem is GET /fhir?_type=A,B (or across every type without _type).
func (a *API) searchSystem(w http.ResponseWriter, r *http.Request) error {
	params := r.URL.Query()
	var types []string
	for _, v := range params["_type"] {
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			if !fhir.IsResourceType(t) {
				return fhir.Invalid("", "_type %q is not a FHIR R4 resource type", t)
			}
			types = append(types, t)
		}
	}
	// No _type: every type the token may search (the policy fills the list in).
	return a.runSearch(w, r, policy.SearchSystem, types, nil, params)
}

// searchCompartment is GET /fhir/Patient/{id}/{type}: a search bounded by one patient's
// compartment.
func (a *API) searchCompartment(w http.ResponseWriter, r *http.Request) error {
	comp, id, typ := r.PathValue("type"), r.PathValue("id"), r.PathValue("compartmentType")
	if err := checkType(comp); err != nil {
		return err
	}
	if comp != "Patient" {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "only the Patient compartment is supported")
	}
	if err := checkID(id); err != nil {
		return err
	}
	if typ == "$everything" {
		return a.everything(w, r, id)
	}
	if typ == "$access-log" {
		return a.accessLog(w, r, id)
	}
	if !fhir.IsResourceType(typ) {
		return fhir.Errorf(http.StatusNotFound, "not-supported", "%q is not a FHIR R4 resource type", typ)
	}
	return a.runSearch(w, r, policy.SearchCompartment, []string{typ}, &search.CompartmentRef{Type: comp, ID: id}, r.URL.Query())
}

// runSearch parses, authorizes, narrows, runs and answers a search as a searchset Bundle.
func (a *API) runSearch(w http.ResponseWriter, r *http.Request, interaction policy.Interaction, types []string, comp *search.CompartmentRef, params url.Values) error {
	q, warnings, err := a.parseSearch(types, params, strictHandling(r))
	if err != nil {
		return err
	}
	q.Compartment = comp
	in := policy.Input{Interaction: interaction, Query: q}
	if interaction != policy.SearchSystem {
		in.Type = types[0]
	}
	d, err := a.authorize(r, in)
	if err != nil {
		return err
	}
	// The narrowing is applied to every page: the page token carries only the store's cursor.
	if err := d.Narrowing.Narrow(q); err != nil {
		return fhir.Errorf(http.StatusForbidden, "forbidden", "the access token does not allow this search: %v", err)
	}
	if len(q.Types) == 0 {
		q.Types = fhir.ResourceTypes()
	}
	if token := params.Get(pageParam); token != "" {
		cursor, ok := a.pages.verify(searchPath(r), params, token, pageBinding(r))
		if !ok {
			return fhir.Invalid(pageParam, "the page link is not valid for this search; start the search again")
		}
		q.Cursor = cursor
	}
	res, err := a.opts.Backend.Search(r.Context(), q)
	if err != nil {
		return err
	}
	matches, included, held := a.filterResults(r, d, res.Matches, res.Included)
	touched(r, matches...)
	touched(r, included...)
	returned(r, len(matches)+len(included))
	b := &fhir.Bundle{ResourceType: "Bundle", ID: newBundleID(), Type: "searchset", Total: res.Total}
	if held {
		// A count that includes resources held back would tell what the caller may not see.
		b.Total = nil
	}
	b.Meta = &fhir.BundleMeta{LastUpdated: a.opts.Now().UTC().Format(fhir.TimeFormat)}
	b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: a.selfURL(r, params)})
	if res.Next != "" {
		next := cloneValues(params)
		next.Set(pageParam, a.pages.sign(searchPath(r), params, res.Next, pageBinding(r)))
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: a.opts.BaseURL + strings.TrimPrefix(searchPath(r), "/fhir") + "?" + next.Encode()})
	}
	for _, m := range matches {
		e, err := a.searchEntry(m, "match", q.Summary, q.Elements)
		if err != nil {
			return err
		}
		b.Entry = append(b.Entry, e)
	}
	for _, inc := range included {
		e, err := a.searchEntry(inc, "include", q.Summary, nil)
		if err != nil {
			return err
		}
		b.Entry = append(b.Entry, e)
	}
	warnings = append(warnings, breakGlassIssues(stateOf(r).principal)...)
	if len(warnings) > 0 {
		oo := &fhir.OperationOutcome{ResourceType: "OperationOutcome", Issue: warnings}
		b.Entry = append(b.Entry, fhir.BundleEntry{Resource: fhir.MarshalOutcome(oo), Search: &fhir.EntrySearch{Mode: "outcome"}})
	}
	body, err := marshal(b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// filterResults passes every match and included resource through the decision's filter; held
// reports whether any was held back.
func (a *API) filterResults(r *http.Request, d policy.Decision, matches, included []*fhir.Resource) (okMatches, okIncluded []*fhir.Resource, held bool) {
	for _, m := range matches {
		if a.visible(r, d, m) {
			okMatches = append(okMatches, m)
		} else {
			held = true
		}
	}
	for _, inc := range included {
		if a.visible(r, d, inc) {
			okIncluded = append(okIncluded, inc)
		} else {
			held = true
		}
	}
	return okMatches, okIncluded, held
}

func (a *API) searchEntry(res *fhir.Resource, mode, summaryMode string, elements []string) (fhir.BundleEntry, error) {
	body, err := shape(res, summaryMode, elements)
	if err != nil {
		return fhir.BundleEntry{}, err
	}
	return fhir.BundleEntry{
		FullURL:  a.opts.BaseURL + "/" + res.Type + "/" + res.ID,
		Resource: body,
		Search:   &fhir.EntrySearch{Mode: mode},
	}, nil
}

// shape applies _summary (true, text, data) or else _elements to a resource about to be
// returned; a stored body that cannot be shaped is an internal error, never sent unfiltered.
func shape(res *fhir.Resource, summaryMode string, elements []string) ([]byte, error) {
	var (
		body = res.Body
		err  error
	)
	switch {
	case summaryMode == "true" || summaryMode == "text" || summaryMode == "data":
		body, err = summary.Apply(summaryMode, res.Type, body)
	case len(elements) > 0:
		body, err = summary.Elements(body, elements)
	}
	if err != nil {
		return nil, fmt.Errorf("fhirapi: shape %s/%s: %w", res.Type, res.ID, err)
	}
	return body, nil
}

// selfURL is the request as the server understood it, without the page token.
func (a *API) selfURL(r *http.Request, params url.Values) string {
	p := cloneValues(params)
	p.Del(pageParam)
	u := a.opts.BaseURL + strings.TrimPrefix(searchPath(r), "/fhir")
	if len(p) > 0 {
		u += "?" + p.Encode()
	}
	return u
}

// searchPath is the GET path of a search: POST {type}/_search pages and links as GET {type}, so
// that the next link, which a client follows with GET, is the same search.
func searchPath(r *http.Request) string { return strings.TrimSuffix(r.URL.Path, "/_search") }

// pageBinding ties page links to the caller; the access-control layer sets it from the token.
func pageBinding(r *http.Request) string {
	if b, ok := r.Context().Value(pageBindingKey{}).(string); ok {
		return b
	}
	return ""
}

type pageBindingKey struct{}

// strictHandling reports Prefer: handling=strict.
func strictHandling(r *http.Request) bool {
	for _, p := range r.Header.Values("Prefer") {
		for part := range strings.SplitSeq(p, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && strings.EqualFold(k, "handling") {
				return strings.EqualFold(strings.Trim(v, `"`), "strict")
			}
		}
	}
	return false
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// parseCriteria parses the query of a conditional header (If-None-Exist: identifier=x|y).
func (a *API) parseCriteria(typ, criteria string) (*search.Query, error) {
	values, err := url.ParseQuery(strings.TrimPrefix(criteria, "?"))
	if err != nil {
		return nil, fhir.Invalid("", "the conditional criteria %q are not a valid query", criteria)
	}
	if len(values) == 0 {
		return nil, fhir.Invalid("", "the conditional criteria are empty")
	}
	q, _, err := a.parseSearch([]string{typ}, values, true)
	return q, err
}

// authorizeCriteria decides the search that conditional criteria run (If-None-Exist, and the
// conditional operations of a Bundle) and narrows q as any search is narrowed, so that the
// criteria can only match resources the caller may see.
func (a *API) authorizeCriteria(r *http.Request, typ string, q *search.Query) (policy.Decision, error) {
	d, err := a.authorize(r, policy.Input{Interaction: policy.SearchType, Type: typ, Query: q})
	if err != nil {
		return d, err
	}
	if err := d.Narrowing.Narrow(q); err != nil {
		return d, fhir.Errorf(http.StatusForbidden, "forbidden", "the access token does not allow these conditional criteria: %v", err)
	}
	return d, nil
}
