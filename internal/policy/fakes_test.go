package policy

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// refMembership is a test Membership: a resource is in Patient/X when it is Patient X, or when
// any "reference" anywhere in it is Patient/X. (The real one follows the CompartmentDefinition
// parameters; this approximation is enough to drive the engine.)
type refMembership struct {
	err error
}

func (m refMembership) InCompartment(comp search.CompartmentRef, typ string, body []byte) (bool, error) {
	if m.err != nil {
		return false, m.err
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return false, err
	}
	obj, _ := v.(map[string]any)
	if typ == comp.Type && obj["id"] == comp.ID {
		return true, nil
	}
	want := comp.Type + "/" + comp.ID
	found := false
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			if r, ok := t["reference"].(string); ok && r == want {
				found = true
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(v)
	return found, nil
}

// fieldMatcher is a test Matcher for token clauses: the clause's parameter code names a
// top-level element (category, code, status) holding a code, a CodeableConcept or an array of
// them; _security and _tag read meta.security and meta.tag.
type fieldMatcher struct {
	err   error
	mu    sync.Mutex
	calls int
}

func (m *fieldMatcher) Matches(_ string, body []byte, clauses []search.Clause) (bool, error) {
	m.mu.Lock()
	m.calls++
	m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return false, err
	}
	for _, c := range clauses {
		if c.Param == nil || c.Param.Type != search.TypeToken {
			return false, errors.New("fieldMatcher: only token clauses")
		}
		var elem any
		switch c.Param.Code {
		case "_security", "_tag":
			meta, _ := obj["meta"].(map[string]any)
			elem = meta[strings.TrimPrefix(c.Param.Code, "_")]
		default:
			elem = obj[c.Param.Code]
		}
		codings := collectCodings(elem)
		ok := false
		for _, v := range c.Values {
			for _, cd := range codings {
				if cd[1] == v.Code && (!v.HasSystem || cd[0] == v.System) {
					ok = true
				}
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// collectCodings returns [system, code] pairs from a code string, Coding, CodeableConcept or
// array of them.
func collectCodings(x any) [][2]string {
	var out [][2]string
	switch t := x.(type) {
	case string:
		out = append(out, [2]string{"", t})
	case []any:
		for _, c := range t {
			out = append(out, collectCodings(c)...)
		}
	case map[string]any:
		if code, ok := t["code"].(string); ok {
			sys, _ := t["system"].(string)
			out = append(out, [2]string{sys, code})
		}
		if cs, ok := t["coding"]; ok {
			out = append(out, collectCodings(cs)...)
		}
	}
	return out
}

var registry = sync.OnceValues(search.DefaultRegistry)

// realMatcher and realMembership are the components the app wires in.
func realMatcher(t testing.TB) Matcher {
	t.Helper()
	m, err := search.NewMatcher(testRegistry(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func realMembership(t testing.TB) Membership {
	t.Helper()
	m, err := compartment.NewMembership(testRegistry(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// listingMembership adds the CompartmentLister fast path to the real Membership, as the app's
// checker can.
type listingMembership struct {
	Membership
	reg   *search.Registry
	calls *atomic.Int64
}

func (l listingMembership) Compartments(compartmentType, typ string, body []byte) ([]string, error) {
	l.calls.Add(1)
	if compartmentType != "Patient" {
		return nil, errors.New("listingMembership: only Patient")
	}
	entries, err := l.reg.Extract(typ, body)
	if err != nil {
		return nil, err
	}
	return compartment.Patient().Members(typ, entries), nil
}

func testRegistry(t testing.TB) *search.Registry {
	t.Helper()
	reg, err := registry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}
