package validate

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// This file holds the checks the JSON schema cannot express. They walk the decoded resource with
// the schema model, so they know the definition (data type) of every element they visit.

// loc is where an element is: its path is built into a FHIRPath string only when an issue names
// it, so that valid resources cost no string building.
type loc struct {
	parent *loc
	root   string // the expression of the resource, set on the root loc only
	name   string // property name; empty for an array item
	index  int
}

func (l *loc) String() string {
	if l.parent == nil {
		return l.root
	}
	if l.name == "" {
		return l.parent.String() + "[" + strconv.Itoa(l.index) + "]"
	}
	return l.parent.String() + "." + l.name
}

// object checks an element whose definition is def.
func (c *checker) object(def string, obj map[string]any, at *loc, sc *scope) {
	info := c.v.model.defs[def]
	if info == nil {
		return
	}
	if len(obj) == 0 {
		// ele-1: All FHIR elements must have a @value or children.
		c.add("required", at.String(), "an element must have a value or children; empty objects are not allowed")
		return
	}
	var choices map[string][]string // choice element -> variants present
	for _, name := range requiredPrimitives[def] {
		if base, ok := strings.CutSuffix(name, "[x]"); ok {
			if !hasChoice(info, obj, base) {
				c.add("required", at.String()+"."+base, "a required element is missing (one of the %s[x] types)", base)
			}
			continue
		}
		if _, ok := obj[name]; !ok {
			if _, ok := obj["_"+name]; !ok {
				c.add("required", at.String()+"."+name, "a required element is missing")
			}
		}
	}
	for k, val := range obj {
		if base, ok := info.choice[k]; ok {
			name := strings.TrimPrefix(k, "_")
			if choices == nil {
				choices = map[string][]string{}
			}
			if !slices.Contains(choices[base], name) {
				choices[base] = append(choices[base], name)
			}
		}
		pi, ok := info.props[k]
		if !ok {
			continue // an unknown element: the schema reports it
		}
		p := loc{parent: at, name: k}
		if list, ok := val.([]any); ok {
			if len(list) == 0 {
				c.add("required", p.String(), "an array must not be empty")
			}
			for i, item := range list {
				c.element(def, pi.def, k, item, &loc{parent: &p, index: i}, sc)
			}
			continue
		}
		c.element(def, pi.def, k, val, &p, sc)
	}
	if def == "Extension" && len(choices["value"]) > 0 {
		if _, ok := obj["extension"]; ok {
			// ext-1: Must have either extensions or value[x], not both.
			c.add("invalid", at.String(), "an extension has either a value or extensions, not both (ext-1)")
		}
	}
	for base, variants := range choices {
		if len(variants) > 1 {
			slices.Sort(variants)
			c.add("structure", at.String()+"."+base, "a choice element %s[x] takes one type, but %s are present", base, strings.Join(variants, " and "))
		}
	}
}

// hasChoice reports whether obj has any variant of the choice element base.
func hasChoice(info *defInfo, obj map[string]any, base string) bool {
	for k := range obj {
		if info.choice[k] == base {
			return true
		}
	}
	return false
}

// element checks one value (one array item for a repeating element) of definition def, found under
// the property name of an element of definition parent.
func (c *checker) element(parent, def, name string, val any, at *loc, sc *scope) {
	switch def {
	case "ResourceList", "Resource":
		if obj, ok := val.(map[string]any); ok {
			c.nested(name, obj, at.String(), sc)
		}
		return
	case "Reference":
		if obj, ok := val.(map[string]any); ok {
			c.reference(obj, at, sc, referenceTargets[parent][name])
		}
	case "date", "dateTime", "instant":
		if s, ok := val.(string); ok && !validCalendarDate(s) {
			c.add("value", at.String(), "%s is not a date of the calendar", quote(s))
		}
	case "integer", "positiveInt", "unsignedInt":
		if n, ok := val.(json.Number); ok {
			c.integer(def, n, at)
		}
	}
	if obj, ok := val.(map[string]any); ok {
		c.object(def, obj, at, sc)
	}
}

// nested checks a resource nested in another one (contained, Bundle.entry.resource,
// Bundle.entry.response.outcome, Parameters.parameter.resource) against its own type.
func (c *checker) nested(name string, obj map[string]any, path string, outer *scope) {
	rt, _ := obj["resourceType"].(string)
	if !fhir.IsResourceType(rt) {
		if rt != "" {
			c.add("invalid", path+".resourceType", "%s is not an R4 resource type", quote(rt))
		}
		return // a missing resourceType is reported by the schema
	}
	if name != "contained" {
		c.resource(rt, obj, path, nil)
		return
	}
	// The rules of R4 DomainResource for contained resources.
	if _, ok := obj["contained"]; ok {
		c.add("invalid", path+".contained", "a contained resource must not contain resources (dom-2)")
	}
	if meta, ok := obj["meta"].(map[string]any); ok {
		if _, ok := meta["versionId"]; ok {
			c.add("invalid", path+".meta.versionId", "a contained resource must not have a versionId (dom-4)")
		}
		if _, ok := meta["lastUpdated"]; ok {
			c.add("invalid", path+".meta.lastUpdated", "a contained resource must not have a lastUpdated (dom-4)")
		}
		if _, ok := meta["security"]; ok {
			c.add("invalid", path+".meta.security", "a contained resource must not have security labels (dom-5); label the container")
		}
	}
	if id, ok := obj["id"].(string); !ok || id == "" {
		c.add("required", path+".id", "a contained resource must have an id for references to reach it")
	}
	c.resource(rt, obj, path, &scope{containedIDs: outer.containedIDs, contained: true})
}

var (
	uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	oidPattern  = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)
)

// reference checks a Reference: the syntax of reference (a relative Type/id or
// Type/id/_history/version with an R4 type and valid ids, an absolute http(s) URL, a local #id
// naming a contained resource or # for the container from a contained resource, urn:uuid: or
// urn:oid:), and, when the type of the target is known (from the reference, the contained resource
// or Reference.type), that the element may point to that type (targets, from the R4
// StructureDefinitions; nil when any type is allowed).
func (c *checker) reference(obj map[string]any, at *loc, sc *scope, targets []string) {
	ref, _ := obj["reference"].(string) // a wrong JSON type or an empty string is the schema's to report
	path := func() string { return at.String() }
	p := func() string { return at.String() + ".reference" }
	refType := ""
	switch {
	case ref == "":
		p = func() string { return at.String() + ".type" } // a logical reference (identifier) may still say its type
	case strings.HasPrefix(ref, "#"):
		id := ref[1:]
		switch {
		case id == "":
			if !sc.contained {
				c.add("value", p(), "%s refers to the containing resource, but this resource is not contained", quote(ref))
			}
		case !fhir.ValidID(id):
			c.add("value", p(), "%s is not a valid local reference: %s is not a valid id", quote(ref), quote(id))
		default:
			rt, ok := sc.containedIDs[id]
			if !ok {
				c.add("value", p(), "%s refers to no contained resource", quote(ref))
			}
			refType = rt
		}
	case strings.HasPrefix(ref, "urn:uuid:"):
		if !uuidPattern.MatchString(ref[len("urn:uuid:"):]) {
			c.add("value", p(), "%s is not a valid urn:uuid: reference (lower-case RFC 4122 form)", quote(ref))
		}
	case strings.HasPrefix(ref, "urn:oid:"):
		if !oidPattern.MatchString(ref[len("urn:oid:"):]) {
			c.add("value", p(), "%s is not a valid urn:oid: reference", quote(ref))
		}
	case strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://"):
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" || strings.ContainsAny(ref, " \t\r\n") {
			c.add("value", p(), "%s is not a valid absolute URL", quote(ref))
			break
		}
		refType = absoluteType(u.Path)
	default:
		var msg string
		refType, msg = checkRelative(ref)
		if msg != "" {
			c.add("value", p(), "%s is not a valid reference: %s", quote(ref), msg)
		}
	}
	if t, ok := obj["type"].(string); ok && fhir.IsResourceType(t) {
		switch {
		case refType == "":
			refType = t
		case t != refType:
			c.add("value", path()+".type", "the reference is to a %s, but type says %s", refType, t)
		}
	}
	if refType != "" && targets != nil && !slices.Contains(targets, refType) {
		c.add("value", p(), "this element may refer to %s, not to a %s", strings.Join(targets, ", "), refType)
	}
}

// absoluteType returns the resource type of an absolute reference whose path ends in a RESTful
// Type/id or Type/id/_history/version (https://example.org/fhir/Patient/123), or "".
func absoluteType(path string) string {
	parts := strings.Split(strings.TrimSuffix(path, "/"), "/")
	n := len(parts)
	if n >= 4 && parts[n-2] == "_history" {
		parts, n = parts[:n-2], n-2
	}
	if n >= 2 && fhir.IsResourceType(parts[n-2]) && fhir.ValidID(parts[n-1]) {
		return parts[n-2]
	}
	return ""
}

// checkRelative checks Type/id and Type/id/_history/version. It returns the type when the syntax
// is valid, or what is wrong.
func checkRelative(ref string) (typ, problem string) {
	parts := strings.Split(ref, "/")
	switch {
	case len(parts) != 2 && len(parts) != 4:
		return "", "expected Type/id, Type/id/_history/version, an absolute http(s) URL, #id, urn:uuid: or urn:oid:"
	case !fhir.IsResourceType(parts[0]):
		return "", quote(parts[0]) + " is not an R4 resource type"
	case !fhir.ValidID(parts[1]):
		return "", quote(parts[1]) + " is not a valid id"
	case len(parts) == 4 && parts[2] != "_history":
		return "", "expected _history after the id"
	case len(parts) == 4 && !fhir.ValidID(parts[3]):
		return "", quote(parts[3]) + " is not a valid version id"
	}
	return parts[0], ""
}

// integer checks the FHIR integer types, which the schema types as any JSON number.
func (c *checker) integer(def string, n json.Number, at *loc) {
	i, err := strconv.ParseInt(string(n), 10, 32)
	switch {
	case err != nil:
		c.add("value", at.String(), "%s is not a 32-bit integer", n)
	case def == "positiveInt" && i < 1:
		c.add("value", at.String(), "%s is not a positive integer", n)
	case def == "unsignedInt" && i < 0:
		c.add("value", at.String(), "%s is negative", n)
	}
}

// validCalendarDate reports whether the year-month-day that a date, dateTime or instant starts with
// exists (the schema pattern accepts 2023-02-31). Values the pattern rejects, or that have no day,
// pass here: they are the schema's to report.
func validCalendarDate(s string) bool {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return true
	}
	y, err1 := strconv.Atoi(s[0:4])
	m, err2 := strconv.Atoi(s[5:7])
	d, err3 := strconv.Atoi(s[8:10])
	if err1 != nil || err2 != nil || err3 != nil || m < 1 || m > 12 || d < 1 || d > 31 {
		return true
	}
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
	if m == 2 && y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d <= days
}
