package validate

import (
	"regexp"
	"testing"
)

var regexpSamples = []string{
	"", " ", "a", "a b", "a  b", " a", "a ", "a\tb", "a\fb", "\f", "a\nb", "a\rb", "a\vb", "é", "a\u00a0b",
	"abc-DEF.12", "a_b", "a/b", "0123456789012345678901234567890123456789012345678901234567890123",
	"01234567890123456789012345678901234567890123456789012345678901234", "urn:oid:1.2.3", "http://x y", "\u2003",
}

func TestFastPatternsMatchRE2(t *testing.T) {
	for pattern, fast := range fastPatterns {
		re := regexp.MustCompile(pattern)
		for _, s := range regexpSamples {
			if got, want := fast(s), re.MatchString(s); got != want {
				t.Errorf("fast %s on %q = %v, regexp says %v", pattern, s, got, want)
			}
		}
	}
}

func FuzzFastPatterns(f *testing.F) {
	for _, s := range regexpSamples {
		f.Add(s)
	}
	res := map[string]*regexp.Regexp{}
	for pattern := range fastPatterns {
		res[pattern] = regexp.MustCompile(pattern)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for pattern, fast := range fastPatterns {
			if got, want := fast(s), res[pattern].MatchString(s); got != want {
				t.Fatalf("fast %s on %q = %v, regexp says %v", pattern, s, got, want)
			}
		}
	})
}
