package fhirapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/policy"
)

func (a *API) historySystem(w http.ResponseWriter, r *http.Request) error {
	return a.runHistory(w, r, policy.HistorySystem, backend.HistoryQuery{})
}

func (a *API) historyType(w http.ResponseWriter, r *http.Request) error {
	typ := r.PathValue("type")
	if err := checkType(typ); err != nil {
		return err
	}
	return a.runHistory(w, r, policy.HistoryType, backend.HistoryQuery{Type: typ})
}

func (a *API) historyInstance(w http.ResponseWriter, r *http.Request) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if err := checkType(typ); err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	return a.runHistory(w, r, policy.HistoryInstance, backend.HistoryQuery{Type: typ, ID: id})
}

// runHistory answers a history interaction as a history Bundle, newest first, paged.
func (a *API) runHistory(w http.ResponseWriter, r *http.Request, interaction policy.Interaction, hq backend.HistoryQuery) error {
	params := r.URL.Query()
	for k := range params {
		switch k {
		case "_count", "_since", pageParam, "_format":
		default:
			if strictHandling(r) {
				return fhir.Invalid(k, "history does not support the parameter %q", k)
			}
		}
	}
	count, err := a.pageSize(params.Get("_count"))
	if err != nil {
		return err
	}
	hq.Count = count
	if s := params.Get("_since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fhir.Invalid("_since", "_since must be an instant such as 2024-01-02T03:04:05Z, got %q", s)
		}
		hq.Since = t
	}
	if token := params.Get(pageParam); token != "" {
		cursor, ok := a.pages.verify(r.URL.Path, params, token, pageBinding(r))
		if !ok {
			return fhir.Invalid(pageParam, "the page link is not valid for this history; start again")
		}
		hq.Cursor = cursor
	}
	d, err := a.authorize(r, policy.Input{Interaction: interaction, Type: hq.Type, ID: hq.ID})
	if err != nil {
		return err
	}
	if hq.ID == "" && d.Narrowing != nil && !d.Narrowing.LabelsOnly() {
		// The store's history cannot be bounded to a compartment or granular scope, and
		// filtering whole pages after the fact would page through other patients' records.
		return fhir.Errorf(http.StatusForbidden, "forbidden", "type and system history are not available to a token bounded to a patient or to granular scopes; use search")
	}
	if hq.ID != "" {
		// The history of a resource that never existed, or that the caller may not see, is a
		// 404, not an empty Bundle.
		cur, err := a.opts.Backend.Read(r.Context(), hq.Type, hq.ID)
		switch {
		case err == nil:
			if !a.visible(r, d, cur) {
				return fhir.NotFound(hq.Type, hq.ID)
			}
		case isGone(err):
			if !a.goneVisible(r, d, cur) {
				return fhir.NotFound(hq.Type, hq.ID)
			}
		default:
			return err
		}
	}
	page, err := a.opts.Backend.History(r.Context(), hq)
	if err != nil {
		return err
	}
	b := &fhir.Bundle{ResourceType: "Bundle", ID: newBundleID(), Type: "history", Total: page.Total}
	if d.Narrowing.LabelsOnly() {
		// The store's count includes versions whose labels the caller may not see.
		b.Total = nil
	}
	b.Meta = &fhir.BundleMeta{LastUpdated: a.opts.Now().UTC().Format(fhir.TimeFormat)}
	b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: a.selfURL(r, params)})
	if page.Next != "" {
		next := cloneValues(params)
		next.Set(pageParam, a.pages.sign(r.URL.Path, params, page.Next, pageBinding(r)))
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: a.opts.BaseURL + strings.TrimPrefix(r.URL.Path, "/fhir") + "?" + next.Encode()})
	}
	for _, e := range page.Entries {
		res := e.Resource
		// Every version is checked: an older version may belong to another patient.
		if !(res.Deleted && hq.ID != "") && !a.visible(r, d, res) {
			b.Total = nil
			continue
		}
		touched(r, res)
		entry := fhir.BundleEntry{
			FullURL: a.opts.BaseURL + "/" + res.Type + "/" + res.ID,
			Request: &fhir.EntryRequest{Method: e.Method, URL: res.Type + "/" + res.ID},
			Response: &fhir.EntryResponse{
				Etag:         res.ETag(),
				LastModified: res.LastUpdated.Format(fhir.TimeFormat),
			},
		}
		switch {
		case res.Deleted:
			entry.Response.Status = "204 No Content"
		case e.Method == "POST" || res.VersionID == 1:
			entry.Response.Status = "201 Created"
		default:
			entry.Response.Status = "200 OK"
		}
		if !res.Deleted {
			entry.Resource = res.Body
		}
		if e.Method == "POST" {
			entry.Request.URL = res.Type
		}
		b.Entry = append(b.Entry, entry)
	}
	returned(r, len(b.Entry))
	appendBreakGlassOutcome(b, stateOf(r).principal)
	body, err := marshal(b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// pageSize reads _count within [0, MaxCount]; absent means DefaultCount.
func (a *API) pageSize(raw string) (int, error) {
	if raw == "" {
		return a.opts.DefaultCount, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return 0, fhir.Invalid("_count", "_count must be a non-negative integer, got %q", raw)
	}
	return min(n, a.opts.MaxCount), nil
}

func newBundleID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func isGone(err error) bool { return errors.Is(err, fhir.ErrGone) }
