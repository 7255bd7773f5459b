package compartment

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// ErrUnknownCompartment is wrapped by the errors of MembershipChecker.InCompartment for a
// compartment type whose definition is not loaded.
var ErrUnknownCompartment = errors.New("compartment: unknown compartment type")

// MembershipChecker decides whether a resource body is in a compartment instance (Patient/123)
// with the rules the SQL store uses for its idx_compartment rows: the body's index entries
// (search.Registry.Extract) and Definition.Members. It implements policy.Membership. It is
// immutable and safe for concurrent use.
type MembershipChecker struct {
	reg *search.Registry
	set *Set
}

// NewMembership builds a MembershipChecker that extracts entries with reg and applies the
// definitions of set; nil set means Default(), the set the store indexes with. reg must be the
// registry the store indexes with. Every parameter a definition names must be a reference
// search parameter of its resource type in reg.
func NewMembership(reg *search.Registry, set *Set) (*MembershipChecker, error) {
	if reg == nil {
		return nil, errors.New("compartment: NewMembership without a registry")
	}
	if set == nil {
		var err error
		if set, err = Default(); err != nil {
			return nil, err
		}
	}
	if len(set.defs) == 0 {
		return nil, fmt.Errorf("%w: no compartment definition", ErrDefinition)
	}
	for _, ct := range set.Types() {
		d := set.defs[ct]
		for _, typ := range d.ResourceTypes() {
			for _, code := range d.Params(typ) {
				p, ok := reg.Lookup(typ, code)
				if !ok || p.Type != search.TypeReference {
					return nil, fmt.Errorf("%w: the %s compartment names %s.%s, which is not a reference search parameter", ErrDefinition, ct, typ, code)
				}
			}
		}
	}
	return &MembershipChecker{reg: reg, set: set}, nil
}

// InCompartment reports whether body, a resource of resourceType, is in the compartment comp.
// A resource of the compartment's own type is in its own compartment (Patient/123 in
// Patient/123's). It returns false and an error for a compartment type without a loaded
// definition, an invalid compartment id, and a body that cannot be indexed as a resourceType.
func (m *MembershipChecker) InCompartment(comp search.CompartmentRef, resourceType string, body []byte) (bool, error) {
	if m == nil || m.reg == nil || m.set == nil {
		return false, errors.New("compartment: InCompartment on a checker not built by NewMembership")
	}
	d, ok := m.set.Lookup(comp.Type)
	if !ok {
		return false, fmt.Errorf("%w %q", ErrUnknownCompartment, comp.Type)
	}
	if !fhir.ValidID(comp.ID) {
		return false, fmt.Errorf("compartment: invalid %s compartment id %q", comp.Type, comp.ID)
	}
	entries, err := m.reg.Extract(resourceType, body)
	if err != nil {
		return false, fmt.Errorf("compartment: %w", err)
	}
	return slices.Contains(d.Members(resourceType, entries), comp.ID), nil
}

// WithParams returns a copy of d in which a resource of resourceType is also placed in a
// compartment through the reference parameters params (Device through patient, for a Patient
// compartment that counts devices). d is not modified. The store must index with the same
// definition (its idx_compartment rows) for a MembershipChecker built on it to agree with the
// store's compartment searches.
func (d *Definition) WithParams(resourceType string, params ...string) (*Definition, error) {
	if !fhir.IsResourceType(resourceType) {
		return nil, fmt.Errorf("%w: unknown resource type %q", ErrDefinition, resourceType)
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("%w: no parameter for %s", ErrDefinition, resourceType)
	}
	out := &Definition{Type: d.Type, URL: d.URL, params: maps.Clone(d.params)}
	if out.params == nil {
		out.params = map[string][]string{}
	}
	ps := slices.Clone(out.params[resourceType])
	for _, p := range params {
		if p == "" {
			return nil, fmt.Errorf("%w: empty parameter for %s", ErrDefinition, resourceType)
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	out.params[resourceType] = ps
	return out, nil
}

// Compartments returns the ids of every compartment of compartmentType that holds body, a
// resource of resourceType (one extraction for all of them). It implements
// policy.CompartmentLister.
func (m *MembershipChecker) Compartments(compartmentType, resourceType string, body []byte) ([]string, error) {
	if m == nil || m.reg == nil || m.set == nil {
		return nil, errors.New("compartment: Compartments on a checker not built by NewMembership")
	}
	d, ok := m.set.Lookup(compartmentType)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownCompartment, compartmentType)
	}
	entries, err := m.reg.Extract(resourceType, body)
	if err != nil {
		return nil, fmt.Errorf("compartment: %w", err)
	}
	return d.Members(resourceType, entries), nil
}
