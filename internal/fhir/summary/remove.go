package summary

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// Remove returns body without the elements at paths, tagged SUBSETTED when something was
// removed (redaction of sensitive content). A path is an element of the resource, dotted into
// backbone elements and datatypes (note, value[x], component.value[x], code.text); "[x]" names
// every variant of a choice element. An element inside an array is removed from every item.
// Primitive extensions (_birthDate) go with their element. Element order is preserved.
// resourceType, id and meta are never removed (meta carries the labels and the tag). The paths
// must have passed CheckPath for the body's type; removed reports whether anything went.
func Remove(body []byte, paths []string) (out []byte, removed bool, err error) {
	members, _, err := parseResource(body)
	if err != nil {
		return nil, false, err
	}
	for _, p := range paths {
		var cut bool
		if members, cut, err = removePath(members, strings.Split(p, ".")); err != nil {
			return nil, false, fmt.Errorf("remove %s: %w", p, err)
		}
		removed = removed || cut
	}
	if !removed {
		return body, false, nil
	}
	if members, err = tagSubsetted(members); err != nil {
		return nil, false, err
	}
	out, err = encode(members)
	return out, true, err
}

// removePath drops the members the first segment names, or descends into them with the rest.
func removePath(members []member, segs []string) ([]member, bool, error) {
	name, choice := strings.CutSuffix(segs[0], "[x]")
	removed := false
	out := members[:0:0]
	for _, m := range members {
		base := strings.TrimPrefix(m.name, "_")
		if base == "resourceType" || base == "id" || base == "meta" || !elementNamed(base, name, choice) {
			out = append(out, m)
			continue
		}
		if len(segs) == 1 {
			removed = true
			continue
		}
		v, cut, err := removeInside(m.value, segs[1:])
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", m.name, err)
		}
		m.value, removed = v, removed || cut
		out = append(out, m)
	}
	return out, removed, nil
}

// elementNamed reports whether the JSON property base is the element name, or with choice one of
// its typed variants (valueQuantity for value).
func elementNamed(base, name string, choice bool) bool {
	if base == name {
		return true
	}
	if !choice || !strings.HasPrefix(base, name) || len(base) == len(name) {
		return false
	}
	return unicode.IsUpper(rune(base[len(name)]))
}

// removeInside applies the rest of a path to an object, or to every object of an array.
func removeInside(value json.RawMessage, segs []string) (json.RawMessage, bool, error) {
	one := func(v json.RawMessage) (json.RawMessage, bool, error) {
		members, err := parseObject(v)
		if err != nil {
			return nil, false, err
		}
		out, cut, err := removePath(members, segs)
		if err != nil || !cut {
			return v, false, err
		}
		enc, err := encode(out)
		return enc, true, err
	}
	return eachObject(value, one)
}

// schemaDefs are the R4 JSON schema's definitions: for each type (Observation,
// Observation_Component, Quantity), its properties and the definition each one refers to.
var schemaDefs = sync.OnceValues(func() (map[string]map[string]string, error) {
	var s struct {
		Definitions map[string]struct {
			Properties map[string]struct {
				Ref   string `json:"$ref"`
				Items struct {
					Ref string `json:"$ref"`
				} `json:"items"`
			} `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(definitions.JSONSchema, &s); err != nil {
		return nil, fmt.Errorf("summary: R4 JSON schema: %w", err)
	}
	defs := make(map[string]map[string]string, len(s.Definitions))
	for name, d := range s.Definitions {
		props := make(map[string]string, len(d.Properties))
		for p, v := range d.Properties {
			ref := v.Ref
			if ref == "" {
				ref = v.Items.Ref
			}
			props[p] = strings.TrimPrefix(ref, "#/definitions/")
		}
		defs[name] = props
	}
	return defs, nil
})

// CheckPath reports whether path names an element of resourceType in FHIR R4 that Remove may
// take out: every segment an element of the one before it (choice elements as name[x]), not
// resourceType, id or meta, and not descending into a primitive.
func CheckPath(resourceType, path string) error {
	defs, err := schemaDefs()
	if err != nil {
		return err
	}
	props, ok := defs[resourceType]
	if !ok || !Known(resourceType) {
		return fmt.Errorf("%q: %w", resourceType, ErrUnknownType)
	}
	segs := strings.Split(path, ".")
	switch segs[0] {
	case "resourceType", "id", "meta":
		return fmt.Errorf("%s.%s is never removed", resourceType, segs[0])
	}
	def := resourceType
	for i, seg := range segs {
		name, choice := strings.CutSuffix(seg, "[x]")
		if name == "" || strings.HasPrefix(name, "_") || strings.ContainsAny(name, "[]") {
			return fmt.Errorf("%s: %q is not an element name", path, seg)
		}
		var refs []string
		for p, ref := range props {
			if elementNamed(p, name, choice) && (choice || p == name) {
				refs = append(refs, ref)
			}
		}
		if len(refs) == 0 || (choice && slicesContain(props, name)) {
			return fmt.Errorf("%s has no element %s", def, seg)
		}
		if i == len(segs)-1 {
			return nil
		}
		if len(refs) != 1 {
			return fmt.Errorf("%s: cannot descend into every variant of %s", path, seg)
		}
		if props, ok = defs[refs[0]]; !ok || isPrimitive(refs[0]) {
			return fmt.Errorf("%s: %s is a primitive", path, seg)
		}
		def = refs[0]
	}
	return errors.New("empty path")
}

// slicesContain reports whether name itself is a property: then "name[x]" is not a choice.
func slicesContain(props map[string]string, name string) bool {
	_, ok := props[name]
	return ok
}

// isPrimitive reports whether a schema definition is a FHIR primitive type (lower-case name).
func isPrimitive(def string) bool { return def != "" && unicode.IsLower(rune(def[0])) }
