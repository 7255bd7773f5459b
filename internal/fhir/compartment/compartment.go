package compartment

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// ErrDefinition is wrapped by the errors of Parse.
var ErrDefinition = errors.New("compartment: invalid CompartmentDefinition")

// The compartment types of FHIR R4.
const (
	TypePatient       = "Patient"
	TypeEncounter     = "Encounter"
	TypeRelatedPerson = "RelatedPerson"
	TypePractitioner  = "Practitioner"
	TypeDevice        = "Device"
)

var compartmentTypes = []string{TypeDevice, TypeEncounter, TypePatient, TypePractitioner, TypeRelatedPerson}

// Definition is one CompartmentDefinition: for each resource type, the reference search
// parameters that place a resource of that type in a compartment instance. It is immutable
// and safe for concurrent use.
type Definition struct {
	// Type is the compartment type (Patient).
	Type string
	// URL is the canonical URL of the definition.
	URL    string
	params map[string][]string
}

// Parse reads a CompartmentDefinition resource (JSON).
func Parse(data []byte) (*Definition, error) {
	var cd struct {
		ResourceType string `json:"resourceType"`
		URL          string `json:"url"`
		Code         string `json:"code"`
		Resource     []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(data, &cd); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDefinition, err)
	}
	if cd.ResourceType != "CompartmentDefinition" {
		return nil, fmt.Errorf("%w: resourceType %q", ErrDefinition, cd.ResourceType)
	}
	if !slices.Contains(compartmentTypes, cd.Code) {
		return nil, fmt.Errorf("%w: unknown compartment type %q", ErrDefinition, cd.Code)
	}
	d := &Definition{Type: cd.Code, URL: cd.URL, params: map[string][]string{}}
	for _, r := range cd.Resource {
		if !fhir.IsResourceType(r.Code) {
			return nil, fmt.Errorf("%w: unknown resource type %q", ErrDefinition, r.Code)
		}
		if len(r.Param) > 0 {
			d.params[r.Code] = slices.Clone(r.Param)
		}
	}
	return d, nil
}

// Params returns the search parameters that place a resourceType resource in a compartment of
// this type (Observation: subject, performer). It is empty for a type that is never in one.
// The caller must not modify the slice.
func (d *Definition) Params(resourceType string) []string { return d.params[resourceType] }

// ResourceTypes lists, sorted, the resource types that may be in a compartment of this type
// (besides the compartment's own type).
func (d *Definition) ResourceTypes() []string {
	out := make([]string, 0, len(d.params))
	for t := range d.params {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Members returns, sorted and without duplicates, the ids of the compartments of this type that
// hold a resource of resourceType whose index entries are entries (search.Extract).
//
// A resource is in the compartment of every local reference (Type/id, not an absolute URL) of
// one of Params(resourceType) whose target type is the compartment type. A resource of the
// compartment type is also in its own compartment (Patient/123 is in Patient/123's), found from
// its _id entry. References by absolute URL are left out on purpose: fhirgate cannot tell
// whether http://host/fhir/Patient/1 is this server's Patient/1, and a wrong guess would show
// a record to another patient.
func (d *Definition) Members(resourceType string, entries []search.Entry) []string {
	params := d.params[resourceType]
	var ids []string
	for i := range entries {
		e := &entries[i]
		switch {
		case resourceType == d.Type && e.Param == "_id" && e.Type == search.TypeToken:
			if fhir.ValidID(e.Code) {
				ids = append(ids, e.Code)
			}
		case e.Type == search.TypeReference && e.TargetType == d.Type && e.URL == "" &&
			slices.Contains(params, e.Param) && fhir.ValidID(e.TargetID):
			ids = append(ids, e.TargetID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Set holds the loaded definitions by compartment type.
type Set struct {
	defs map[string]*Definition
}

// NewSet builds a Set; two definitions of one compartment type are an error.
func NewSet(defs ...*Definition) (*Set, error) {
	s := &Set{defs: map[string]*Definition{}}
	for _, d := range defs {
		if _, dup := s.defs[d.Type]; dup {
			return nil, fmt.Errorf("%w: two definitions of the %s compartment", ErrDefinition, d.Type)
		}
		s.defs[d.Type] = d
	}
	return s, nil
}

// Lookup returns the definition of a compartment type.
func (s *Set) Lookup(compartmentType string) (*Definition, bool) {
	d, ok := s.defs[compartmentType]
	return d, ok
}

// Types lists the compartment types of the set, sorted.
func (s *Set) Types() []string {
	out := make([]string, 0, len(s.defs))
	for t := range s.defs {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Ref names one compartment instance.
type Ref struct {
	Type string // Patient
	ID   string
}

// Memberships returns every compartment instance of the set that holds the resource, ordered by
// type then id.
func (s *Set) Memberships(resourceType string, entries []search.Entry) []Ref {
	var out []Ref
	for _, t := range s.Types() {
		for _, id := range s.defs[t].Members(resourceType, entries) {
			out = append(out, Ref{Type: t, ID: id})
		}
	}
	return out
}

var (
	defaultOnce sync.Once
	defaultSet  *Set
	defaultErr  error
)

// Default returns the set of the definitions fhirgate embeds (Patient).
func Default() (*Set, error) {
	defaultOnce.Do(func() {
		var p *Definition
		if p, defaultErr = Parse(definitions.PatientCompartment); defaultErr == nil {
			defaultSet, defaultErr = NewSet(p)
		}
	})
	return defaultSet, defaultErr
}

// Patient returns the embedded Patient CompartmentDefinition. The embedded file is checked by
// the package tests, so a failure here is a broken build: it panics.
func Patient() *Definition {
	s, err := Default()
	if err != nil {
		panic(err)
	}
	d, _ := s.Lookup(TypePatient)
	return d
}

// Membership returns the ids of the Patients whose compartment holds a resource of
// resourceType with these index entries (Patient().Members).
func Membership(resourceType string, entries []search.Entry) []string {
	return Patient().Members(resourceType, entries)
}
