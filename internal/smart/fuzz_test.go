package smart

import (
	"strings"
	"testing"
)

var fuzzSeeds = []string{
	"openid", "fhirUser", "launch/patient", "offline_access",
	"patient/Observation.read", "user/*.*", "system/*.rs", "patient/Observation.rs",
	"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
	"patient/Condition.rs?category=a,b&clinical-status=active",
	"patient/Observation.rs?code=a%26b%25",
	"patient/Observation.readx", "patient/Observation.sr", "patient/Observation.rs?code:in=x",
	"patient/Observation.rs?_include=Observation:subject", "patient/Observations.rs",
}

// FuzzParseScope checks that whatever parses is a fixed point of String, is understood the same
// way after a round trip, covers itself, and never contains a separator.
func FuzzParseScope(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseScope(in)
		if err != nil {
			return
		}
		norm := s.String()
		if strings.ContainsAny(norm, " \t\r\n\"\\") {
			t.Fatalf("String() of %q = %q contains a forbidden character", in, norm)
		}
		again, err := ParseScope(norm)
		if err != nil {
			t.Fatalf("String() of %q = %q does not parse: %v", in, norm, err)
		}
		if !again.Equal(s) || again.String() != norm {
			t.Fatalf("round trip of %q: %q became %q", in, norm, again.String())
		}
		echo, err := ParseScope(s.Echo())
		if err != nil || !echo.Equal(s) {
			t.Fatalf("Echo() of %q = %q does not mean the same: %v", in, s.Echo(), err)
		}
		if !Covers(s, s) {
			t.Fatalf("%q does not cover itself", in)
		}
		if s.Kind == KindResource {
			if s.Perms == 0 || s.Perms&^PermsAll != 0 {
				t.Fatalf("%q has perms %b", in, s.Perms)
			}
			if s.Type != AllTypes && !IsResourceType(s.Type) {
				t.Fatalf("%q has type %q", in, s.Type)
			}
			for _, c := range s.Constraints {
				if strings.ContainsAny(c.Param, ":.") || (strings.HasPrefix(c.Param, "_") && !allowedUnderscore[c.Param]) {
					t.Fatalf("%q has constraint param %q", in, c.Param)
				}
			}
		}
	})
}

// FuzzParseScopes checks that a parsed scope string, written back, parses to the same set with
// nothing dropped, and that Intersect with itself is a no-op in meaning.
func FuzzParseScopes(f *testing.F) {
	f.Add(strings.Join(fuzzSeeds, " "))
	f.Add("openid  patient/*.rs patient/Observation.r")
	f.Fuzz(func(t *testing.T, in string) {
		ss, _ := ParseScopes(in)
		again, dropped := ParseScopes(ss.String())
		if len(dropped) != 0 || len(again) != len(ss) {
			t.Fatalf("re-parse of %q dropped %v (had %d, now %d)", ss.String(), dropped, len(ss), len(again))
		}
		self := ss.Intersect(ss)
		for _, s := range ss {
			if !self.Covers(s) {
				t.Fatalf("Intersect with itself lost %q", s)
			}
		}
		for _, s := range self {
			if !ss.Covers(s) {
				t.Fatalf("Intersect with itself gained %q", s)
			}
		}
	})
}
