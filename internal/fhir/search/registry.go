package search

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// Registry holds the search parameters of every resource type. It is immutable once built and
// safe for concurrent use.
type Registry struct {
	byType map[string]map[string]*Param
	byURL  map[string]*Param
}

type searchParameter struct {
	URL        string   `json:"url"`
	Code       string   `json:"code"`
	Base       []string `json:"base"`
	Type       Type     `json:"type"`
	Expression string   `json:"expression"`
	Target     []string `json:"target"`
	Modifier   []string `json:"modifier"`
	Comparator []string `json:"comparator"`
	Component  []struct {
		Definition string `json:"definition"`
		Expression string `json:"expression"`
	} `json:"component"`
}

type paramBundle struct {
	Entry []struct {
		Resource searchParameter `json:"resource"`
	} `json:"entry"`
}

// DefaultRegistry builds the registry of every R4 search parameter plus the US Core ones.
func DefaultRegistry() (*Registry, error) {
	return NewRegistry(definitions.SearchParameters, definitions.USCoreSearchParameters)
}

// NewRegistry builds a registry from Bundles of SearchParameter resources. Later bundles add to
// earlier ones; a code defined twice for one type keeps the first definition.
func NewRegistry(bundles ...[]byte) (*Registry, error) {
	r := &Registry{byType: map[string]map[string]*Param{}, byURL: map[string]*Param{}}
	for _, t := range fhir.ResourceTypes() {
		r.byType[t] = map[string]*Param{}
	}
	var composites []*Param
	for i, raw := range bundles {
		var b paramBundle
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("search: parameter bundle %d: %w", i, err)
		}
		for _, e := range b.Entry {
			sp := e.Resource
			if sp.Code == "" || sp.Type == "" {
				continue
			}
			for _, base := range expandBase(sp.Base) {
				params, ok := r.byType[base]
				if !ok {
					continue
				}
				if _, dup := params[sp.Code]; dup {
					continue
				}
				p := &Param{
					Code:        sp.Code,
					Type:        sp.Type,
					URL:         sp.URL,
					Expression:  branchesFor(sp.Expression, base),
					Targets:     sp.Target,
					Modifiers:   sp.Modifier,
					Comparators: sp.Comparator,
				}
				for _, c := range sp.Component {
					p.Components = append(p.Components, Component{Definition: c.Definition, Expression: c.Expression})
				}
				params[sp.Code] = p
				if _, ok := r.byURL[sp.URL]; !ok {
					r.byURL[sp.URL] = p
				}
				if p.Type == TypeComposite {
					composites = append(composites, p)
				}
			}
		}
	}
	for _, p := range composites {
		for i := range p.Components {
			p.Components[i].Param = r.byURL[p.Components[i].Definition]
		}
	}
	return r, nil
}

// expandBase turns Resource and DomainResource into every type they stand for.
func expandBase(bases []string) []string {
	var out []string
	for _, b := range bases {
		switch b {
		case "Resource", "DomainResource":
			out = append(out, fhir.ResourceTypes()...)
		default:
			out = append(out, b)
		}
	}
	return out
}

// branchesFor keeps the '|' branches of a multi-type expression that apply to typ. Branches are
// split at top level only (a '|' inside parentheses belongs to its branch).
func branchesFor(expr, typ string) string {
	if expr == "" {
		return ""
	}
	var keep []string
	for _, br := range SplitUnion(expr) {
		b := strings.TrimSpace(br)
		root := strings.TrimLeft(b, "( ")
		if i := strings.IndexAny(root, ".("); i >= 0 {
			root = root[:i]
		}
		switch root {
		case typ, "Resource", "DomainResource":
			keep = append(keep, b)
		default:
			// A branch that is not rooted at a type name (rare) applies to every base.
			if root == "" || !fhir.IsResourceType(root) {
				keep = append(keep, b)
			}
		}
	}
	return strings.Join(keep, " | ")
}

// SplitUnion splits a FHIRPath expression at its top-level '|' operators.
func SplitUnion(expr string) []string {
	var out []string
	depth, start := 0, 0
	inStr := false
	for i := 0; i < len(expr); i++ {
		switch c := expr[i]; {
		case c == '\'':
			inStr = !inStr
		case inStr:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			out = append(out, strings.TrimSpace(expr[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(expr[start:]))
}

// Lookup returns the parameter code of resource type typ.
func (r *Registry) Lookup(typ, code string) (*Param, bool) {
	p, ok := r.byType[typ][code]
	return p, ok
}

// ByURL returns the parameter with this canonical URL.
func (r *Registry) ByURL(url string) (*Param, bool) {
	p, ok := r.byURL[url]
	return p, ok
}

// Params returns every parameter of typ, sorted by code.
func (r *Registry) Params(typ string) []*Param {
	m := r.byType[typ]
	out := make([]*Param, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Param) int { return strings.Compare(a.Code, b.Code) })
	return out
}
