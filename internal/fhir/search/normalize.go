package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Normalize is the form string search values are indexed and compared in: compatibility
// decomposition (NFKD) with the combining marks removed (é -> e, ﬁ -> fi), lower case, and runs
// of white space collapsed to one space with none at either end. "FHIR: the search is case- and
// accent-insensitive" is implemented by normalising both sides with this function.
func Normalize(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		s = norm.NFKD.String(s)
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if r < utf8.RuneSelf {
			if 'A' <= r && r <= 'Z' {
				r += 'a' - 'A'
			}
			b.WriteByte(byte(r))
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// maxIndexedString caps the bytes of a string kept in the index (string values, pathToken text,
// uri values). Longer values are cut at a rune boundary: prefix searches still work on the
// first maxIndexedString bytes, :exact and :contains only within them.
const maxIndexedString = 2048

// capString is how every string enters the index: NUL characters removed (PostgreSQL text
// cannot hold them) and cut at maxIndexedString bytes.
func capString(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) <= maxIndexedString {
		return s
	}
	cut := maxIndexedString
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// splitReference parses a Reference.reference string.
//
//   - Type/id and Type/id/_history/n give typ and id;
//   - an absolute http(s) URL ending in Type/id (or Type/id/_history/n) gives typ and id and
//     keeps the URL in url (it may be this server or another one);
//   - any other absolute reference (urn:uuid:, urn:oid:, a URL with no Type/id) gives url only;
//   - a local reference (#id) and anything else give nothing.
func splitReference(ref string) (typ, id, url string) {
	if ref == "" || ref[0] == '#' {
		return "", "", ""
	}
	absolute := strings.Contains(ref, ":")
	if absolute {
		url = ref
		if !strings.HasPrefix(ref, "http://") && !strings.HasPrefix(ref, "https://") {
			return "", "", url
		}
	}
	path := ref
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		if !absolute {
			return "", "", "" // a conditional reference left unresolved
		}
		path = path[:i]
	}
	// Type/id, or Type/id/_history/n, at the end of the path.
	typ, id, hist := tailSegments(path)
	switch {
	case hist && !absolute && strings.Count(path, "/") != 3:
		return "", "", ""
	case !hist && !absolute && strings.Count(path, "/") != 1:
		return "", "", ""
	}
	if !fhir.IsResourceType(typ) || !validID(id) {
		return "", "", url
	}
	return typ, id, url
}

// tailSegments returns the last two segments of path, or the two before "_history/n".
func tailSegments(path string) (typ, id string, history bool) {
	rest := path
	last := func() string {
		i := strings.LastIndexByte(rest, '/')
		seg := rest[i+1:]
		if i < 0 {
			rest = ""
		} else {
			rest = rest[:i]
		}
		return seg
	}
	tail := last() // id, or the version of a _history path
	prev := last()
	if prev == "_history" {
		id = last()
		return last(), id, true
	}
	return prev, tail, false
}

// validID is fhir.ValidID without a regular expression: 1-64 of A-Z a-z 0-9 - and '.'.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
