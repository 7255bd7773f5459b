package summary

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The _summary modes Apply accepts. ModeCount is not a resource mode: a search with
// _summary=count returns no resources, so Apply refuses it.
const (
	ModeTrue  = "true"
	ModeText  = "text"
	ModeData  = "data"
	ModeFalse = "false"
	ModeCount = "count"
)

// SubsettedSystem and SubsettedCode identify the tag that marks a resource as incomplete, so that
// clients do not mistake it for the whole resource (nor send it back in an update).
const (
	SubsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	SubsettedCode   = "SUBSETTED"
)

var subsettedTag = json.RawMessage(`{"system":"` + SubsettedSystem + `","code":"` + SubsettedCode + `","display":"subsetted"}`)

// flag is a property of an element definition.
type flag uint8

const (
	summary   flag = 1 << iota // isSummary in the base definition
	mandatory                  // minimum cardinality above 0
	modifier                   // isModifier, or a modifierExtension
)

// elem is what the generated tables record about one JSON property.
type elem struct {
	flags    flag
	choice   string // the element name without [x], for a choice variant (valueQuantity: value)
	backbone string // for a summary backbone element, the path of its own table
}

// ErrUnknownType reports a resource type that is not in FHIR R4.
var ErrUnknownType = errors.New("not a FHIR R4 resource type")

// Known reports whether the package has the summary definition of resourceType.
func Known(resourceType string) bool {
	_, ok := tables[resourceType]
	return ok
}

// Apply returns body reduced as _summary=mode asks:
//
//   - "true": the elements marked isSummary in the base definition, plus the mandatory and the
//     modifier elements (modifierExtension included), at the top level and, recursively, inside
//     summary backbone elements (Observation.component keeps code and value[x]); datatypes are
//     kept whole;
//   - "text": resourceType, id, meta, text and the top-level mandatory and modifier elements;
//   - "data": everything but text;
//   - "false" or "": body unchanged.
//
// When an element was removed, meta.tag gains the SUBSETTED tag (existing meta and tags are kept,
// the tag is not repeated). resourceType, when not empty, must match the body's. Primitive
// extensions (_birthDate) follow their element. Element order is preserved.
func Apply(mode, resourceType string, body []byte) ([]byte, error) {
	switch mode {
	case "", ModeFalse:
		return body, nil
	case ModeTrue, ModeText, ModeData:
	case ModeCount:
		return nil, errors.New("_summary=count returns no resources")
	default:
		return nil, fmt.Errorf("unknown _summary mode %q: want true, text, data or false", mode)
	}
	members, rt, err := parseResource(body)
	if err != nil {
		return nil, err
	}
	if resourceType != "" && resourceType != rt {
		return nil, fmt.Errorf("the body is a %s, not a %s", rt, resourceType)
	}
	table, known := tables[rt]
	if !known && mode != ModeData {
		return nil, fmt.Errorf("%q: %w", rt, ErrUnknownType)
	}
	var keep func(name string, e elem) bool
	switch mode {
	case ModeTrue:
		keep = func(_ string, e elem) bool { return e.flags != 0 }
	case ModeText:
		keep = func(name string, e elem) bool { return name == "text" || e.flags&(mandatory|modifier) != 0 }
	case ModeData:
		keep = func(name string, _ elem) bool { return name != "text" }
	}
	out, removed, err := filter(members, table, keep, mode == ModeTrue)
	if err != nil {
		return nil, err
	}
	if !removed {
		return body, nil
	}
	return encode(out)
}

// Elements returns body reduced to the top-level elements named in elements (the _elements
// parameter), plus resourceType, id, meta and the mandatory and modifier elements, and tags it
// SUBSETTED when something was removed. A name may carry the resource type as prefix
// (Patient.name); a prefix of another type, or a nested path, selects nothing in this resource.
// A choice element is named by its base (value or value[x]) or by one variant (valueQuantity).
// An empty list asks for no subsetting: body is returned unchanged. Resource types outside R4
// are subsetted without the mandatory and modifier elements, which are then unknown.
func Elements(body []byte, elements []string) ([]byte, error) {
	if len(elements) == 0 {
		return body, nil
	}
	members, rt, err := parseResource(body)
	if err != nil {
		return nil, err
	}
	named := map[string]bool{}
	for _, e := range elements {
		e = strings.TrimSpace(e)
		if t, rest, ok := strings.Cut(e, "."); ok {
			if t != rt {
				continue
			}
			e = rest
		}
		if e = strings.TrimSuffix(e, "[x]"); e != "" && !strings.Contains(e, ".") {
			named[e] = true
		}
	}
	table := tables[rt]
	keep := func(name string, e elem) bool {
		return named[name] || (e.choice != "" && named[e.choice]) || e.flags&(mandatory|modifier) != 0
	}
	out, removed, err := filter(members, table, keep, false)
	if err != nil {
		return nil, err
	}
	if !removed {
		return body, nil
	}
	return encode(out)
}

// member is one name/value pair of a JSON object, in document order.
type member struct {
	name  string
	value json.RawMessage
}

// parseResource splits a resource into its members and returns its resourceType.
func parseResource(body []byte) ([]member, string, error) {
	members, err := parseObject(body)
	if err != nil {
		return nil, "", fmt.Errorf("the resource is not a JSON object: %w", err)
	}
	for _, m := range members {
		if m.name == "resourceType" {
			var rt string
			if err := json.Unmarshal(m.value, &rt); err != nil || rt == "" {
				return nil, "", errors.New("resourceType is not a non-empty string")
			}
			return members, rt, nil
		}
	}
	return nil, "", errors.New("the resource has no resourceType")
}

// parseObject reads one JSON object, keeping the order of its members and their raw values.
func parseObject(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("found %v", tok)
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("found %v where a name belongs", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		members = append(members, member{name, v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the object")
	}
	return members, nil
}

// filter keeps the members keep accepts, together with resourceType, id, meta and the _name
// extension twins of kept elements. With descend, kept backbone elements are filtered with their
// own table and the summary rule. removed reports whether anything was left out; meta is tagged
// SUBSETTED when it was.
func filter(members []member, table map[string]elem, keep func(string, elem) bool, descend bool) (out []member, removed bool, err error) {
	kept := func(name string) bool {
		switch name {
		case "resourceType", "id", "meta":
			return true
		}
		return keep(name, table[name])
	}
	for _, m := range members {
		name := m.name
		if base, ok := strings.CutPrefix(name, "_"); ok && base != "" {
			name = base
		}
		if !kept(name) {
			removed = true
			continue
		}
		if e := table[name]; descend && e.backbone != "" && name == m.name {
			v, cut, err := filterBackbone(m.value, e.backbone)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %w", m.name, err)
			}
			m.value, removed = v, removed || cut
		}
		out = append(out, m)
	}
	if !removed {
		return out, false, nil
	}
	out, err = tagSubsetted(out)
	return out, true, err
}

// filterBackbone applies the summary rule to a backbone element, or to each one of an array.
func filterBackbone(value json.RawMessage, path string) (json.RawMessage, bool, error) {
	table := tables[path]
	keep := func(_ string, e elem) bool { return e.flags != 0 }
	one := func(v json.RawMessage) (json.RawMessage, bool, error) {
		members, err := parseObject(v)
		if err != nil {
			return nil, false, err
		}
		var out []member
		removed := false
		for _, m := range members {
			name := strings.TrimPrefix(m.name, "_")
			if !keep(name, table[name]) {
				removed = true
				continue
			}
			if e := table[name]; e.backbone != "" && name == m.name {
				v, cut, err := filterBackbone(m.value, e.backbone)
				if err != nil {
					return nil, false, fmt.Errorf("%s: %w", m.name, err)
				}
				m.value, removed = v, removed || cut
			}
			out = append(out, m)
		}
		if !removed {
			return v, false, nil
		}
		enc, err := encode(out)
		return enc, true, err
	}
	return eachObject(value, one)
}

// eachObject applies one to an object, or to every object of an array, and reports whether one
// changed any. Anything else (a primitive, a malformed backbone element left for validation to
// refuse) is returned unchanged.
func eachObject(value json.RawMessage, one func(json.RawMessage) (json.RawMessage, bool, error)) (json.RawMessage, bool, error) {
	trimmed := bytes.TrimSpace(value)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		if len(trimmed) > 0 && trimmed[0] != '{' {
			return value, false, nil
		}
		return one(value)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(value, &items); err != nil {
		return nil, false, err
	}
	removed := false
	for i, it := range items {
		if t := bytes.TrimSpace(it); len(t) == 0 || t[0] != '{' {
			continue
		}
		v, cut, err := one(it)
		if err != nil {
			return nil, false, fmt.Errorf("[%d]: %w", i, err)
		}
		items[i], removed = v, removed || cut
	}
	if !removed {
		return value, false, nil
	}
	enc, err := json.Marshal(items)
	return enc, true, err
}

// tagSubsetted adds the SUBSETTED tag to meta.tag, creating meta (after id) or tag as needed.
func tagSubsetted(members []member) ([]member, error) {
	at := -1
	for i, m := range members {
		if m.name == "meta" {
			at = i
			break
		}
	}
	var meta []member
	if at >= 0 && !bytes.Equal(bytes.TrimSpace(members[at].value), []byte("null")) {
		var err error
		if meta, err = parseObject(members[at].value); err != nil {
			return nil, fmt.Errorf("meta: %w", err)
		}
	}
	tagAt := -1
	for i, m := range meta {
		if m.name == "tag" {
			tagAt = i
			break
		}
	}
	var tags []json.RawMessage
	if tagAt >= 0 {
		if err := json.Unmarshal(meta[tagAt].value, &tags); err != nil {
			return nil, fmt.Errorf("meta.tag is not an array: %w", err)
		}
	}
	for _, t := range tags {
		var c struct {
			System string `json:"system"`
			Code   string `json:"code"`
		}
		if json.Unmarshal(t, &c) == nil && c.System == SubsettedSystem && c.Code == SubsettedCode {
			return members, nil // already marked
		}
	}
	tagsJSON, err := json.Marshal(append(tags, subsettedTag))
	if err != nil {
		return nil, err
	}
	if tagAt >= 0 {
		meta[tagAt].value = tagsJSON
	} else {
		meta = append(meta, member{"tag", tagsJSON})
	}
	metaJSON, err := encode(meta)
	if err != nil {
		return nil, err
	}
	if at >= 0 {
		members[at].value = metaJSON
		return members, nil
	}
	// A new meta goes after resourceType and id, where FHIR JSON puts it.
	pos := 0
	for i, m := range members {
		if m.name == "resourceType" || m.name == "id" {
			pos = i + 1
		}
	}
	members = append(members, member{})
	copy(members[pos+1:], members[pos:])
	members[pos] = member{"meta", metaJSON}
	return members, nil
}

// encode writes members back as a compact JSON object.
func encode(members []member) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			buf.WriteByte(',')
		}
		name, err := json.Marshal(m.name)
		if err != nil {
			return nil, err
		}
		buf.Write(name)
		buf.WriteByte(':')
		if err := json.Compact(&buf, m.value); err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
