package smart

import "strings"

// Scopes is a set of scopes, in the order they were given. Scopes combine as a union.
type Scopes []Scope

// maxScopes bounds how many scope tokens ParseScopes reads from one string; the rest are dropped.
const maxScopes = 256

// maxIntersect bounds the candidate scopes Intersect compares pairwise.
const maxIntersect = 512

// ParseScopes parses a space-separated scope string (RFC 6749 section 3.3). Tokens that are not
// valid scopes are dropped, never reported as errors, and returned in dropped (as written) so the
// caller can log them. Duplicates (by meaning, so patient/X.read and patient/X.rs) are kept once,
// the first spelling winning.
func ParseScopes(s string) (Scopes, []string) {
	var out Scopes
	var dropped []string
	n := 0
	for tok := range strings.SplitSeq(s, " ") {
		if tok == "" {
			continue
		}
		n++
		if n > maxScopes {
			dropped = append(dropped, truncate(tok))
			continue
		}
		sc, err := ParseScope(tok)
		if err != nil {
			dropped = append(dropped, truncate(tok))
			continue
		}
		if out.indexEqual(sc) >= 0 {
			continue
		}
		out = append(out, sc)
	}
	return out, dropped
}

func (ss Scopes) indexEqual(sc Scope) int {
	for i, o := range ss {
		if o.Equal(sc) {
			return i
		}
	}
	return -1
}

// String is the space-separated normalised v2 form.
func (ss Scopes) String() string { return ss.join(Scope.String) }

// Echo is the space-separated form with each scope in the syntax it was requested in (see
// Scope.Echo); token responses and introspection answers use it.
func (ss Scopes) Echo() string { return ss.join(Scope.Echo) }

func (ss Scopes) join(f func(Scope) string) string {
	var b strings.Builder
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f(s))
	}
	return b.String()
}

// Strings returns the normalised form of each scope.
func (ss Scopes) Strings() []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

// Has reports whether a scope of kind k is present.
func (ss Scopes) Has(k Kind) bool {
	for _, s := range ss {
		if s.Kind == k {
			return true
		}
	}
	return false
}

// HasContext reports whether a resource scope with context c is present.
func (ss Scopes) HasContext(c Context) bool {
	for _, s := range ss {
		if s.Kind == KindResource && s.Context == c {
			return true
		}
	}
	return false
}

// Covers reports whether one scope of ss covers requested.
func (ss Scopes) Covers(requested Scope) bool {
	for _, g := range ss {
		if Covers(g, requested) {
			return true
		}
	}
	return false
}

// Intersect returns the part of ss that allowed permits: for each scope of ss and each scope of
// allowed, the largest scope both permit (patient/*.cruds against patient/Observation.rs gives
// patient/Observation.rs; a granular allowed scope adds its constraints). Scopes covered by
// another result are removed, so the result is minimal. Order follows ss; each result keeps the
// syntax of the ss scope it came from, so a v1 request can be answered in v1.
//
// The authorization server uses it twice: requested ∩ client's registered scopes, then ∩ what
// the user consented to. To bound the work a hostile scope string can cause, at most
// maxIntersect candidate scopes are considered (in order); the rest are withheld, never widened.
func (ss Scopes) Intersect(allowed Scopes) Scopes {
	var all Scopes
collect:
	for _, s := range ss {
		// When allowed covers s whole, every other meet with s is covered by s itself.
		if allowed.Covers(s) {
			if all.indexEqual(s) < 0 {
				if len(all) == maxIntersect {
					break
				}
				all = append(all, s)
			}
			continue
		}
		for _, a := range allowed {
			m, ok := meet(s, a)
			if !ok || all.indexEqual(m) >= 0 {
				continue
			}
			if len(all) == maxIntersect {
				break collect
			}
			all = append(all, m)
		}
	}
	var out Scopes
	for i, s := range all {
		redundant := false
		for j, o := range all {
			if i == j || !Covers(o, s) {
				continue
			}
			// o covers s. Drop s unless they are equal and s comes first (keep one of equals).
			if !o.Equal(s) || j < i {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, s)
		}
	}
	return out
}

// Strategy has the shape of an OAuth library's scope strategy (fosite.ScopeStrategy): it reports
// whether one of the granted scope strings covers the requested one. Strings that do not parse
// never match.
func Strategy(granted []string, requested string) bool {
	r, err := ParseScope(requested)
	if err != nil {
		return false
	}
	for _, g := range granted {
		gs, err := ParseScope(g)
		if err == nil && Covers(gs, r) {
			return true
		}
	}
	return false
}
