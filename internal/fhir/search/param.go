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
	Code       string
	Type       Type
	Expression string
	Targets    []string
}
