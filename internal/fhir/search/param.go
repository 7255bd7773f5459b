package search

// Type is a search parameter type.
type Type string

// The search parameter types of FHIR R4.
const (
	TypeString    Type = "string"
	TypeToken     Type = "token"
	TypeReference Type = "reference"
	TypeDate      Type = "date"
	TypeNumber    Type = "number"
	TypeQuantity  Type = "quantity"
	TypeURI       Type = "uri"
	TypeComposite Type = "composite"
	TypeSpecial   Type = "special"
)

// Param is the definition of a search parameter for one resource type.
type Param struct {
	// Code is the name used in requests (subject, _id, code-value-quantity).
	Code string
	// Type is the search parameter type.
	Type Type
	// URL is the canonical URL of the SearchParameter.
	URL string
	// Expression is the FHIRPath expression restricted to this resource type: the '|' branches
	// of the official expression that start with this type (or Resource/DomainResource).
	Expression string
	// Targets are the resource types a reference parameter may point to.
	Targets []string
	// Components are the parts of a composite parameter, in order.
	Components []Component
	// Modifiers and Comparators are what the definition allows; empty means unrestricted.
	Modifiers   []string
	Comparators []string
}

// Component is one part of a composite search parameter.
type Component struct {
	// Definition is the canonical URL of the component's own SearchParameter.
	Definition string
	// Expression is evaluated relative to each element the composite's expression selects.
	Expression string
	// Param is the resolved definition (its Type says how the component value is compared).
	Param *Param
}
