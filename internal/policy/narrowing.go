package policy

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// ErrNarrowing is returned by Narrow when a query cannot carry the narrowing (the FHIR API must
// then refuse the request; Evaluate already denies the shapes that cause it).
var ErrNarrowing = errors.New("policy: the search cannot be narrowed to the token's access")

// Narrowing is what a decision adds to the search (or history, or $everything) a request runs,
// so that the backend returns only what the token may see: enforcement happens in the query,
// not by fetching everything and filtering. Every page of a search must be narrowed again; a
// paging cursor is never trusted to carry it.
type Narrowing struct {
	// Compartment, when set, bounds every type searched to this compartment (the token's
	// patient, or the patient of $everything).
	Compartment *search.CompartmentRef
	// Types replaces an empty type list (a system search over every type) with the types the
	// token may search; nil leaves it alone.
	Types []string
	// Clauses are ANDed into a search of the type they are keyed by (granular scopes).
	Clauses map[string][]search.Clause

	mu   sync.Mutex
	e    *Engine
	subj *subject
	perm smart.Perms
	deny map[string]bool
	// labels hide the resources whose security labels the token's clearance does not cover:
	// one _security:not clause ANDed into every search, whatever its types.
	labels *labelRules
}

func newNarrowing(e *Engine, subj *subject, perm smart.Perms) *Narrowing {
	n := &Narrowing{Clauses: map[string][]search.Clause{}, e: e, subj: subj, perm: perm, deny: map[string]bool{}}
	if subj != nil && subj.labels.searchable() {
		n.labels = subj.labels
	}
	return n
}

// orNil drops a narrowing that adds nothing.
func (n *Narrowing) orNil() *Narrowing {
	if n == nil || (n.Compartment == nil && n.Types == nil && len(n.Clauses) == 0 && n.labels == nil) {
		return nil
	}
	return n
}

// LabelsOnly reports whether the narrowing only hides labelled resources (no compartment, type
// or per-type clause): a history can then run and drop the hidden entries one by one.
func (n *Narrowing) LabelsOnly() bool {
	return n != nil && n.labels != nil && n.Compartment == nil && n.Types == nil && len(n.Clauses) == 0
}

// For returns the clauses to AND into a search of typ, and false when typ must not be searched
// at all (no scope reaches it, or its granular scopes cannot be expressed). $everything uses it
// for each type it gathers.
func (n *Narrowing) For(typ string) ([]search.Clause, bool) {
	if n == nil {
		return nil, true
	}
	cl, ok := n.forType(typ)
	if !ok || n.labels == nil {
		return cl, ok
	}
	lc, err := n.labels.clauses(n.e, []string{typ})
	if err != nil {
		return nil, false
	}
	return append(cl, lc...), true
}

func (n *Narrowing) forType(typ string) ([]search.Clause, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cl, ok := n.Clauses[typ]; ok {
		return slices.Clone(cl), true
	}
	if n.deny[typ] {
		return nil, false
	}
	if n.e == nil {
		return nil, true
	}
	a, r, _ := n.e.accessFor(n.subj, typ, n.perm)
	if r != "" {
		n.deny[typ] = true
		return nil, false
	}
	cl, ok, err := n.e.searchClauses(&a, typ)
	if !ok || err != nil {
		n.deny[typ] = true
		return nil, false
	}
	if len(cl) == 0 {
		return nil, true
	}
	n.Clauses[typ] = cl
	return slices.Clone(cl), true
}

func (n *Narrowing) refusesType(typ string) bool {
	return n.subj != nil && n.subj.consentUnbounded && n.e != nil && n.e.consentGoverns(typ)
}

// Narrow applies the narrowing to q: it sets the compartment (refusing a different one the
// client named), fills an empty type list, and appends the granular clauses of the type
// searched. A nil Narrowing leaves q as it is.
func (n *Narrowing) Narrow(q *search.Query) error {
	if n == nil {
		return nil
	}
	if q == nil {
		return fmt.Errorf("%w: no query", ErrNarrowing)
	}
	if n.Compartment != nil {
		switch {
		case q.Compartment == nil:
			c := *n.Compartment
			q.Compartment = &c
		case *q.Compartment != *n.Compartment:
			return fmt.Errorf("%w: compartment %s/%s is not %s/%s", ErrNarrowing,
				q.Compartment.Type, q.Compartment.ID, n.Compartment.Type, n.Compartment.ID)
		}
	}
	if len(q.Types) == 0 && n.Types != nil {
		q.Types = slices.Clone(n.Types)
	}
	if len(q.Types) == 0 && (n.Compartment != nil || len(n.Clauses) > 0) {
		return fmt.Errorf("%w: a search over every type", ErrNarrowing)
	}
	var add []search.Clause
	if n.labels != nil {
		types := q.Types
		if len(types) == 0 {
			types = definitions.ResourceTypes
		}
		lc, err := n.labels.clauses(n.e, types)
		if err != nil {
			return fmt.Errorf("%w: security labels: %w", ErrNarrowing, err)
		}
		add = append(add, lc...)
	}
	for _, t := range q.Types {
		if n.refusesType(t) {
			return fmt.Errorf("%w: a patient's Consent restricts %s across patients", ErrNarrowing, t)
		}
		cl, ok := n.forType(t)
		if !ok {
			return fmt.Errorf("%w: %s may not be searched", ErrNarrowing, t)
		}
		if len(cl) > 0 && len(q.Types) > 1 {
			return fmt.Errorf("%w: granular scopes on %s in a search over several types", ErrNarrowing, t)
		}
		add = append(add, cl...)
	}
	q.Clauses = append(q.Clauses, add...)
	return n.narrowChains(q)
}
