package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// A chain (subject:Patient.name=x) or a _has (_has:Observation:patient:code=y) tests its inner
// clause on other resources than the ones searched: without a bound on those targets, a token
// could learn from the matches what it may not read (which patients have an HIV-labelled
// Observation, the name of a V-labelled Patient, data a patient's Consent keeps from it).
// checkChain (engine.go) lets a chain reach only types the token searches without a compartment,
// user or granular bound; what is left to bound are the security labels and the Consents, and
// Narrow sets them on every link as search.Chain.Filter / search.Reverse.Filter: the clauses a
// search of the link's target type would get.

// hasChain reports whether q has a chain or a _has clause.
func hasChain(q *search.Query) bool {
	return q != nil && slices.ContainsFunc(q.Clauses, func(c search.Clause) bool { return c.Chain != nil || c.Reverse != nil })
}

// chainsNarrowed reports whether the subject's chains may need a Filter: some labels are hidden
// or some patient has a Consent. The decision then keeps its Narrowing for a search with
// chains, even when the search itself is not narrowed.
func (n *Narrowing) chainsNarrowed() bool {
	return n != nil && n.subj != nil && (n.labels != nil || len(n.subj.consentPatients) > 0 || n.subj.consentTooMany)
}

// narrowChains sets the Filter of every link of the chains and _has of q. The links are
// copied, never changed in place (a parsed query may share them), and a Filter is replaced,
// not appended to: narrowing a query twice does not double it.
func (n *Narrowing) narrowChains(q *search.Query) error {
	if n.e == nil || n.subj == nil {
		return nil
	}
	for i, c := range q.Clauses {
		nc, err := n.narrowLink(c, 0)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNarrowing, err)
		}
		q.Clauses[i] = nc
	}
	return nil
}

func (n *Narrowing) narrowLink(c search.Clause, depth int) (search.Clause, error) {
	if depth > search.MaxChainDepth {
		return c, errors.New("chain too deep")
	}
	switch {
	case c.Chain != nil:
		ch := *c.Chain
		targets := []string{ch.Type}
		if ch.Type == "" && c.Param != nil {
			targets = c.Param.Targets
		}
		f, err := n.targetFilter(targets)
		if err != nil {
			return c, err
		}
		if ch.Clause, err = n.narrowLink(ch.Clause, depth+1); err != nil {
			return c, err
		}
		ch.Filter = f
		c.Chain = &ch
	case c.Reverse != nil:
		rv := *c.Reverse
		f, err := n.targetFilter([]string{rv.Type})
		if err != nil {
			return c, err
		}
		if rv.Clause, err = n.narrowLink(rv.Clause, depth+1); err != nil {
			return c, err
		}
		rv.Filter = f
		c.Reverse = &rv
	}
	return c, nil
}

// targetFilter is what a link whose targets are of types must AND on them: the label clause
// and the Consent clauses a search of the type would get. A type the token may not search
// without bounds, or that a Consent keeps out of searches across patients, refuses the search;
// so do several target types with Consent clauses (one clause cannot hold the parameters of
// several types).
func (n *Narrowing) targetFilter(types []string) ([]search.Clause, error) {
	types = slices.DeleteFunc(slices.Clone(types), func(t string) bool { return t == "" })
	if len(types) == 0 {
		return nil, errors.New("a chain whose target type is unknown")
	}
	var out []search.Clause
	if n.labels != nil {
		// Every hidden label, redacted ones too: the link's predicate may test a removed element.
		lc, err := n.labels.hideAllClauses(n.e, types)
		if err != nil {
			return nil, fmt.Errorf("security labels on %v: %w", types, err)
		}
		out = append(out, lc...)
	}
	for _, t := range types {
		cl, err := n.chainConsentClauses(t)
		if err != nil {
			return nil, err
		}
		if len(cl) > 0 && len(types) > 1 {
			return nil, fmt.Errorf("a patient's Consent restricts %s, one of several types the chain may reach: name the type", t)
		}
		out = append(out, cl...)
	}
	return out, nil
}

// chainConsentClauses are the Consent clauses for the targets of type typ. They are those of
// a search of typ (the exclusion of the restricting patients across patients, the bound
// patient's rules within one) and, within one patient, the exclusion of every other patient
// whose Consent restricts typ: a link can leave the bound patient's record
// (Patient?_id=a&general-practitioner._has:Observation:performer:code=x reaches every
// patient's Observations), and no response filter sees the targets.
func (n *Narrowing) chainConsentClauses(typ string) ([]search.Clause, error) {
	e, subj := n.e, n.subj
	if n.refusesType(typ) {
		return nil, fmt.Errorf("a patient's Consent restricts %s across patients", typ)
	}
	a, r, _ := e.accessFor(subj, typ, searchPerms)
	if r != "" || a.constrained() {
		// checkChain refuses these at Evaluate; kept here so that Narrow never runs an
		// unbounded link.
		return nil, fmt.Errorf("the chain reaches %s, which the token cannot search without bounds", typ)
	}
	cl, ok, err := e.searchClauses(&a, typ)
	switch {
	case errors.Is(err, errConsentUnbounded):
		return nil, fmt.Errorf("a patient's Consent restricts %s across patients", typ)
	case err != nil:
		return nil, fmt.Errorf("cannot bound %s: %w", typ, err)
	case !ok:
		return nil, fmt.Errorf("%s may not be searched", typ)
	}
	if !subj.consentBound || !e.consentGoverns(typ) || e.consents == nil || subj.p.IsBreakGlass() {
		return cl, nil
	}
	if subj.consentTooMany {
		return nil, fmt.Errorf("a patient's Consent restricts %s across patients", typ)
	}
	var others []*consentRules
	for _, id := range slices.Sorted(maps.Keys(subj.consentPatients)) {
		if id == subj.consentBoundID {
			continue
		}
		r, err := e.consentFor(subj.ctx, subj, id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			others = append(others, r)
		}
	}
	ex, ok, err := e.excludePatients(others, typ)
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot bound %s: %w", typ, err)
	case !ok:
		return nil, fmt.Errorf("a patient's Consent restricts %s across patients", typ)
	}
	return append(cl, ex...), nil
}
