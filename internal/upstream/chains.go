package upstream

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// The policy narrows every link of a chain or _has on its targets (search.Chain.Filter,
// search.Reverse.Filter), which FHIR query syntax cannot say. Such a link is resolved in two
// steps before the outer search is sent: the link's targets are searched upstream with the
// inner clause and the filter, every match is re-checked here against both with the in-memory
// matcher (an upstream that ignores a parameter cannot widen the link), and the link becomes a
// plain clause over the ids found: ref=Type/id1,Type/id2 for a chain, _id=id1,id2 for a _has.

// MaxChainIDs caps the ids one filtered link resolves to; above it the search is refused (400
// too-costly) rather than answered partly.
const MaxChainIDs = 1000

// maxChainScan caps the resources read upstream to resolve one link (a _has reads every
// referring resource, several per id; an upstream whose next links loop stops here too).
const maxChainScan = 10 * MaxChainIDs

// chainPageSize is the _count of the resolution searches (the upstream may page smaller).
const chainPageSize = 500

// errTooCostly refuses a link over a cap (MaxChainIDs targets, maxChainScan resources read).
func errTooCostly(what string, limit int) error {
	return fhir.Errorf(http.StatusBadRequest, "too-costly",
		"the chained search %s reaches more than %d resources through security-labelled or Consent-restricted targets in proxy mode; narrow it", what, limit)
}

// hasFilteredLink reports whether some link of c, at any depth, has a Filter.
func hasFilteredLink(c search.Clause) bool {
	switch {
	case c.Chain != nil:
		return len(c.Chain.Filter) > 0 || hasFilteredLink(c.Chain.Clause)
	case c.Reverse != nil:
		return len(c.Reverse.Filter) > 0 || hasFilteredLink(c.Reverse.Clause)
	}
	return false
}

// resolveChains returns q with its filtered links resolved (q itself when it has none). none
// is true when some link matches nothing: the clauses are ANDed, so the search matches nothing.
func (b *Backend) resolveChains(ctx context.Context, q *search.Query) (_ *search.Query, none bool, err error) {
	if !slices.ContainsFunc(q.Clauses, hasFilteredLink) {
		return q, false, nil
	}
	out := *q
	out.Clauses = make([]search.Clause, len(q.Clauses))
	for i, c := range q.Clauses {
		rc, none, err := b.resolveClause(ctx, q.Types, q.LocalBase, c, 0)
		if err != nil || none {
			return nil, none, err
		}
		out.Clauses[i] = rc
	}
	return &out, false, nil
}

// resolveClause resolves the filtered links of c, a clause of a search over types, innermost
// first.
func (b *Backend) resolveClause(ctx context.Context, types []string, localBase string, c search.Clause, depth int) (search.Clause, bool, error) {
	if depth > search.MaxChainDepth {
		return c, false, errors.New("upstream: chain too deep")
	}
	switch {
	case c.Chain != nil:
		ch := *c.Chain
		if ch.Type == "" || c.Param == nil {
			return c, false, errChainFilter
		}
		inner, none, err := b.resolveClause(ctx, []string{ch.Type}, localBase, ch.Clause, depth+1)
		if err != nil || none {
			return c, none, err
		}
		ch.Clause = inner
		if len(ch.Filter) == 0 {
			c.Chain = &ch
			return c, false, nil
		}
		var ids []string
		err = b.linkTargets(ctx, ch.Type, inner, ch.Filter, func(res *fhir.Resource) error {
			if !slices.Contains(ids, res.ID) {
				if len(ids) == MaxChainIDs {
					return errTooCostly(c.Param.Code+":"+ch.Type, MaxChainIDs)
				}
				ids = append(ids, res.ID)
			}
			return nil
		})
		if err != nil || len(ids) == 0 {
			return c, err == nil, err
		}
		slices.Sort(ids)
		// The values the parser makes of ref=Type/id (parseReference).
		rc := search.Clause{Param: c.Param}
		for _, id := range ids {
			rc.Values = append(rc.Values, search.Value{Raw: ch.Type + "/" + id, RefType: ch.Type, RefID: id, LocalBase: localBase})
		}
		return rc, false, nil
	case c.Reverse != nil:
		rv := *c.Reverse
		if rv.Param == nil {
			return c, false, errors.New("upstream: a _has clause without its reference parameter")
		}
		inner, none, err := b.resolveClause(ctx, []string{rv.Type}, localBase, rv.Clause, depth+1)
		if err != nil || none {
			return c, none, err
		}
		rv.Clause = inner
		if len(rv.Filter) == 0 {
			c.Reverse = &rv
			return c, false, nil
		}
		if len(types) != 1 {
			// _id=... cannot say which of several types an id is of.
			return c, false, fhir.Errorf(http.StatusBadRequest, "not-supported",
				"a _has through security-labelled or Consent-restricted resources over several types is not supported in proxy mode; search one type")
		}
		outer := types[0]
		idParam, ok := b.reg.Lookup(outer, "_id")
		if !ok {
			return c, false, errors.New("upstream: the registry has no _id")
		}
		var ids []string
		err = b.linkTargets(ctx, rv.Type, inner, rv.Filter, func(res *fhir.Resource) error {
			entries, err := b.reg.Extract(rv.Type, res.Body)
			if err != nil {
				return upstreamFailed("the upstream FHIR server sent a resource that cannot be indexed")
			}
			for _, e := range entries {
				if e.Param != rv.Param.Code || e.Type != search.TypeReference || e.TargetType != outer || e.TargetID == "" {
					continue
				}
				if !slices.Contains(ids, e.TargetID) {
					if len(ids) == MaxChainIDs {
						return errTooCostly("_has:"+rv.Type+":"+rv.Param.Code, MaxChainIDs)
					}
					ids = append(ids, e.TargetID)
				}
			}
			return nil
		})
		if err != nil || len(ids) == 0 {
			return c, err == nil, err
		}
		slices.Sort(ids)
		// The values the parser makes of _id=id (parseToken).
		rc := search.Clause{Param: idParam}
		for _, id := range ids {
			rc.Values = append(rc.Values, search.Value{Raw: id, Code: id})
		}
		return rc, false, nil
	}
	return c, false, nil
}

// linkTargets searches typ upstream with inner and filter, following every next link, and
// calls keep with each match that the matcher confirms: filter must hold exactly (a clause it
// cannot evaluate fails the search), inner must hold unless the matcher cannot evaluate it
// (then the upstream's word is taken, as for any search).
func (b *Backend) linkTargets(ctx context.Context, typ string, inner search.Clause, filter []search.Clause, keep func(*fhir.Resource) error) error {
	// A Consent's internal reference :not clause (policy/consent.go) is not R4 search syntax,
	// which upstreams refuse: it is left to the matcher, like the rest of the filter.
	sent := []search.Clause{inner}
	for _, c := range filter {
		if !isReferenceNot(c) {
			sent = append(sent, c)
		}
	}
	q := &search.Query{Types: []string{typ}, Clauses: sent, Count: chainPageSize}
	params, err := encodeParams(q)
	if err != nil {
		return err
	}
	target := b.url(params, typ)
	scanned := 0
	for {
		r, err := b.do(ctx, http.MethodGet, target, nil, nil)
		if err != nil {
			return err
		}
		if err := b.mapStatus(ctx, r, "", ""); err != nil {
			if errors.Is(err, fhir.ErrNotFound) {
				return upstreamFailed("the upstream FHIR server does not know this search")
			}
			return err
		}
		bd, err := b.decodeBundle(r.body)
		if err != nil {
			return err
		}
		for _, e := range bd.Entry {
			if len(e.Resource) == 0 || (e.Search != nil && e.Search.Mode != "" && e.Search.Mode != "match") {
				continue
			}
			res, err := b.decodeResource(e.Resource)
			if err != nil {
				return err
			}
			if res.Type != typ {
				b.opts.Logger.WarnContext(ctx, "the upstream answered a chained search with another type", "asked_type", typ, "answered_type", res.Type)
				return upstreamFailed("the upstream FHIR server answered a search with resources of another type")
			}
			if scanned++; scanned > maxChainScan {
				return errTooCostly("through "+typ, maxChainScan)
			}
			ok, err := b.matcher.Matches(typ, res.Body, filter)
			if err != nil {
				if errors.Is(err, search.ErrNotIndexable) {
					return upstreamFailed("the upstream FHIR server sent a resource that cannot be indexed")
				}
				return fhir.Errorf(http.StatusBadRequest, "not-supported",
					"a chained search through %s cannot be checked against the access policy in proxy mode", typ)
			}
			if !ok {
				continue
			}
			if ok, err := b.matcher.Matches(typ, res.Body, []search.Clause{inner}); !ok && !errors.Is(err, search.ErrNotEvaluable) {
				continue
			}
			if err := keep(res); err != nil {
				return err
			}
		}
		next := bd.next()
		if next == "" {
			return nil
		}
		if target, err = b.nextOnBase(next); err != nil {
			return err
		}
	}
}

func isReferenceNot(c search.Clause) bool {
	return c.Modifier == "not" && c.Param != nil && c.Param.Type == search.TypeReference && c.Chain == nil && c.Reverse == nil
}
