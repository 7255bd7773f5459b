package fhirapi

import (
	"net/http"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// everythingLimit bounds the resources one $everything returns; a larger record answers 422
// (too-costly) rather than build an unbounded response.
const everythingLimit = 10_000

// everything is Patient/{id}/$everything: every resource of the patient's compartment that the
// token may read, each type searched with the token's narrowing and every resource filtered.
func (a *API) everything(w http.ResponseWriter, r *http.Request, id string) error {
	d, err := a.authorize(r, policy.Input{Interaction: policy.Operation, Type: "Patient", ID: id, Operation: "$everything"})
	if err != nil {
		return err
	}
	if _, err := a.opts.Backend.Read(r.Context(), "Patient", id); err != nil {
		return err
	}
	comp := &search.CompartmentRef{Type: "Patient", ID: id}
	b := &fhir.Bundle{ResourceType: "Bundle", ID: newBundleID(), Type: "searchset"}
	b.Meta = &fhir.BundleMeta{LastUpdated: a.opts.Now().UTC().Format(fhir.TimeFormat)}
	b.Link = []fhir.BundleLink{{Relation: "self", URL: a.opts.BaseURL + "/Patient/" + id + "/$everything"}}
	for _, typ := range compartment.Patient().ResourceTypes() {
		if !d.Filter.Permits(typ) {
			continue
		}
		clauses, ok := d.Narrowing.For(typ)
		if !ok {
			continue
		}
		q := &search.Query{Types: []string{typ}, Compartment: comp, Clauses: clauses, Count: a.opts.MaxCount, LocalBase: a.opts.BaseURL + "/"}
		for {
			res, err := a.opts.Backend.Search(r.Context(), q)
			if err != nil {
				return err
			}
			for _, m := range res.Matches {
				if !a.visible(r, d, m) {
					continue
				}
				touched(r, m)
				if len(b.Entry) == everythingLimit {
					return fhir.Errorf(http.StatusUnprocessableEntity, "too-costly", "the record holds more than %d resources; search it type by type", everythingLimit)
				}
				e, err := a.searchEntry(m, "match", "", nil)
				if err != nil {
					return err
				}
				b.Entry = append(b.Entry, e)
			}
			if res.Next == "" {
				break
			}
			q.Cursor = res.Next
		}
	}
	total := len(b.Entry)
	b.Total = &total
	returned(r, total)
	appendBreakGlassOutcome(b, stateOf(r).principal)
	body, err := marshal(b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}
