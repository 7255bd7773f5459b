package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/summary"
)

// Redaction returns the resources that carry one of Labels, when the token's clearance does not
// cover the label, redacted instead of hidden: the Elements of their type removed, with the
// narrative (text) and contained resources, and meta.tag SUBSETTED. A resource of a type
// Elements does not name, or with another label above the clearance, stays hidden.
//
// A redacted resource still shows that it exists, its labels and every element not removed.
// Where that is itself sensitive, hide the label instead (no redaction).
type Redaction struct {
	// Labels are confidentiality codes (U..V) or enforced sensitivity codes.
	Labels []string
	// Elements are, per resource type, the element paths removed (summary.CheckPath).
	Elements map[string][]string
}

// alwaysRedacted are removed from every redacted resource: the narrative restates the data,
// and contained resources carry their own.
var alwaysRedacted = []string{"text", "contained"}

// setRedaction compiles the redactions into e.redact: label → type → paths.
func (e *Engine) setRedaction(rs []Redaction) error {
	for _, r := range rs {
		if len(r.Labels) == 0 || len(r.Elements) == 0 {
			return fmt.Errorf("policy: a redaction needs labels and elements")
		}
		for _, code := range r.Labels {
			l := label{ActCodeSystem, code}
			switch {
			case authn.ConfidentialityRank(code) >= 0:
				l.system = ConfidentialitySystem
			case !slices.Contains(e.sensitivity, code):
				return fmt.Errorf("policy: redacted label %q is neither a confidentiality code nor an enforced sensitivity code", code)
			}
			if e.redact == nil {
				e.redact = map[label]map[string][]string{}
			}
			if e.redact[l] == nil {
				e.redact[l] = map[string][]string{}
			}
			for typ, paths := range r.Elements {
				for _, p := range paths {
					if err := summary.CheckPath(typ, p); err != nil {
						return fmt.Errorf("policy: redaction of %s: %w", code, err)
					}
				}
				merged := slices.Concat(e.redact[l][typ], alwaysRedacted, paths)
				slices.Sort(merged)
				e.redact[l][typ] = slices.Compact(merged)
			}
		}
	}
	return nil
}

// strict returns the rules with every hidden label hiding its resources: for a request whose
// answer would depend on an element redaction removes (redact.go queryUsesRedacted).
func (r *labelRules) strict() *labelRules {
	if r == nil || r.redact == nil {
		return r
	}
	return &labelRules{hidden: r.hidden, value: r.value}
}

// hideAllClauses are the clauses that hide every hidden label, redacted ones included: for the
// targets of chains and _has, whose predicates would otherwise test removed elements.
func (r *labelRules) hideAllClauses(e *Engine, types []string) ([]search.Clause, error) {
	return r.strict().clauses(e, types)
}

// queryUsesRedacted reports whether a search's answer depends on an element that redaction
// removes from some resource it could return: a parameter, sort key or _include/_revinclude
// whose expression reaches such an element (or a parameter without one, like _text). Such a
// search runs with the redacted labels hidden, so that no one learns a removed value by
// searching for it (Observation?value-quantity=gt1000 matching a redacted Observation).
func (r *labelRules) queryUsesRedacted(q *search.Query) bool {
	if r == nil || r.redact == nil || q == nil {
		return false
	}
	removed := map[string][]string{} // type → paths any hidden label removes
	for _, byType := range r.redact {
		for t, paths := range byType {
			removed[t] = append(removed[t], paths...)
		}
	}
	types := q.Types
	if len(types) == 0 {
		types = slices.Collect(maps.Keys(removed))
	}
	touches := func(typ string, p *search.Param) bool {
		if p == nil || removed[typ] == nil {
			return false
		}
		return paramUses(typ, p, removed[typ])
	}
	for _, c := range q.Clauses {
		if c.Reverse != nil {
			continue // _has tests other resources; its targets hide every hidden label
		}
		for _, t := range types {
			if touches(t, c.Param) {
				return true
			}
		}
	}
	for _, k := range q.Sort {
		for _, t := range types {
			if touches(t, k.Param) {
				return true
			}
		}
	}
	for _, inc := range slices.Concat(q.Includes, q.RevIncludes) {
		incTypes := []string{inc.Type}
		if inc.Type == "" {
			incTypes = slices.Collect(maps.Keys(removed))
		}
		for _, t := range incTypes {
			if removed[t] != nil && (inc.Param == nil || paramUses(t, inc.Param, removed[t])) {
				return true
			}
		}
	}
	return false
}

// paramUses reports whether a search parameter of typ reaches one of the removed element paths.
// A parameter without an expression (_text, _content) is assumed to reach everything.
func paramUses(typ string, p *search.Param, removed []string) bool {
	if p.Expression == "" {
		return true
	}
	used := expressionPaths(typ, p.Expression)
	if p.Type == search.TypeComposite {
		var parts []string
		for _, base := range used {
			for _, c := range p.Components {
				for _, rel := range expressionPaths("", c.Expression) {
					parts = append(parts, strings.Trim(base+"."+rel, "."))
				}
			}
		}
		used = append(used, parts...)
	}
	for _, u := range used {
		for _, rm := range removed {
			if pathsOverlap(u, strings.ReplaceAll(rm, "[x]", "")) {
				return true
			}
		}
	}
	return false
}

// expressionPaths are the element paths a FHIRPath expression reads from a resource of typ
// (Observation.component.value as Quantity: component.value), up to the first function call.
// With typ empty the expression is relative (a composite's component: value.as(Quantity)).
// Resource. and DomainResource. paths count for every type. An expression that is the type
// itself reads the whole resource ("").
func expressionPaths(typ, expr string) []string {
	var out []string
	isIdent := func(b byte) bool {
		return b == '_' || b < 128 && (unicode.IsLetter(rune(b)) || unicode.IsDigit(rune(b)))
	}
	readPath := func(i int) string {
		var segs []string
		for i < len(expr) {
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			if j == i || (j < len(expr) && expr[j] == '(') {
				break
			}
			segs = append(segs, expr[i:j])
			if j >= len(expr) || expr[j] != '.' {
				break
			}
			i = j + 1
		}
		return strings.Join(segs, ".")
	}
	if typ == "" {
		return []string{readPath(0)}
	}
	for _, root := range []string{typ, "Resource", "DomainResource"} {
		for i := 0; ; {
			k := strings.Index(expr[i:], root)
			if k < 0 {
				break
			}
			at := i + k
			end := at + len(root)
			i = end
			if at > 0 && isIdent(expr[at-1]) || end < len(expr) && isIdent(expr[end]) {
				continue // part of a longer name (ObservationDefinition)
			}
			if end < len(expr) && expr[end] == '.' {
				out = append(out, readPath(end+1))
			} else {
				out = append(out, "")
			}
		}
	}
	return out
}

// pathsOverlap reports whether one element path is the other or contains it (component and
// component.value; value and valueQuantity, a choice's variant).
func pathsOverlap(used, removed string) bool {
	if used == "" || removed == "" {
		return true
	}
	u, r := strings.Split(used, "."), strings.Split(removed, ".")
	for i := 0; i < len(u) && i < len(r); i++ {
		if !elementOrVariant(u[i], r[i]) && !elementOrVariant(r[i], u[i]) {
			return false
		}
	}
	return true
}

// elementOrVariant reports whether name is base or one of its choice variants (valueQuantity).
func elementOrVariant(name, base string) bool {
	if name == base {
		return true
	}
	return strings.HasPrefix(name, base) && len(name) > len(base) && unicode.IsUpper(rune(name[len(base)]))
}
