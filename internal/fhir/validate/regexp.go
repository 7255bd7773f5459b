package validate

import (
	"regexp"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The schema checks the syntax of every primitive with a regular expression. The four below
// match most values of a resource (every string, code, uri and id), and Go's regexp package
// spends more time on them than the rest of the validation does; they are matched by hand,
// with exactly the semantics of their RE2 form (regexp_test.go compares both). Every other
// pattern goes to regexp.
var fastPatterns = map[string]func(string) bool{
	`^[ \r\n\t\S]+$`:          isFHIRString,
	`^\S*$`:                   isFHIRURI,
	`^[^\s]+(\s[^\s]+)*$`:     isFHIRCode,
	`^[A-Za-z0-9\-\.]{1,64}$`: isFHIRID,
}

// compileRegexp is the schema compiler's regular expression engine.
func compileRegexp(pattern string) (jsonschema.Regexp, error) {
	if f, ok := fastPatterns[pattern]; ok {
		return fastRegexp{pattern: pattern, match: f}, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return re, nil
}

type fastRegexp struct {
	pattern string
	match   func(string) bool
}

func (r fastRegexp) MatchString(s string) bool { return r.match(s) }
func (r fastRegexp) String() string            { return r.pattern }

// isSpace is RE2's \s: [\t\n\f\r ].
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// isFHIRString is ^[ \r\n\t\S]+$: not empty, and no form feed (the one \s not listed).
func isFHIRString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '\f' {
			return false
		}
	}
	return true
}

// isFHIRURI is ^\S*$.
func isFHIRURI(s string) bool {
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			return false
		}
	}
	return true
}

// isFHIRCode is ^[^\s]+(\s[^\s]+)*$: words separated by single whitespace characters.
func isFHIRCode(s string) bool {
	if s == "" || isSpace(s[0]) || isSpace(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if isSpace(s[i]) && isSpace(s[i-1]) {
			return false
		}
	}
	return true
}

// isFHIRID is ^[A-Za-z0-9\-\.]{1,64}$.
func isFHIRID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
