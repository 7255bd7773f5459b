package bundle

import (
	"bytes"
	"encoding/json"
	"strings"
)

// rewriteStrings returns body with every JSON string value s replaced by repl(key, s) when that
// reports true; key is the name of the innermost object member the value belongs to (for values
// in arrays, the member holding the array). Everything else, member order and spacing included,
// is copied as it is. body must be valid JSON (the caller has decoded it once already); the
// result is valid JSON whenever body is.
func rewriteStrings(body []byte, repl func(key, s string) (string, bool)) []byte {
	var (
		out     []byte // nil until the first replacement
		copied  int    // body[:copied] is already in out
		lastKey string
	)
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		start := i
		escaped := false
		i++
		for i < len(body) && body[i] != '"' {
			if body[i] == '\\' {
				escaped = true
				i++
			}
			i++
		}
		if i >= len(body) {
			break // unterminated string: invalid JSON, left as it is
		}
		end := i + 1 // body[start:end] is the quoted string
		raw := body[start+1 : i]
		s := string(raw)
		if escaped {
			if err := json.Unmarshal(body[start:end], &s); err != nil {
				continue
			}
		}
		j := end
		for j < len(body) && (body[j] == ' ' || body[j] == '\t' || body[j] == '\n' || body[j] == '\r') {
			j++
		}
		if j < len(body) && body[j] == ':' {
			lastKey = s
			continue
		}
		r, ok := repl(lastKey, s)
		if !ok || r == s {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(body)+64)
		}
		out = append(out, body[copied:start]...)
		out = appendJSONString(out, r)
		copied = end
	}
	if out == nil {
		return body
	}
	return append(out, body[copied:]...)
}

// appendJSONString appends s as a JSON string, without escaping <, > and & (narrative XHTML
// stays readable).
func appendJSONString(dst []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(dst, bytes.TrimRight(buf.Bytes(), "\n")...)
}

// replaceInNarrative replaces the bundle-local URLs that appear as href or src attribute values
// in an XHTML narrative div, as the transaction rules require of narrative links.
func replaceInNarrative(div string, lookup func(string) (string, bool)) (string, bool) {
	if !strings.Contains(div, "urn:") {
		return div, false
	}
	changed := false
	var b strings.Builder
	rest := div
	for {
		i := indexAttr(rest)
		if i < 0 {
			break
		}
		q := rest[i] // the quote character
		end := strings.IndexByte(rest[i+1:], q)
		if end < 0 {
			break
		}
		val := rest[i+1 : i+1+end]
		b.WriteString(rest[:i+1])
		if r, ok := lookup(val); ok {
			b.WriteString(r)
			changed = true
		} else {
			b.WriteString(val)
		}
		rest = rest[i+1+end:]
	}
	if !changed {
		return div, false
	}
	b.WriteString(rest)
	return b.String(), true
}

// indexAttr finds the next href= or src= attribute value in s and returns the index of its
// opening quote, or -1.
func indexAttr(s string) int {
	best := -1
	for _, a := range []string{"href=", "src="} {
		off := 0
		for {
			k := strings.Index(s[off:], a)
			if k < 0 {
				break
			}
			p := off + k + len(a)
			if p < len(s) && (s[p] == '"' || s[p] == '\'') {
				if best < 0 || p < best {
					best = p
				}
				break
			}
			off = p
		}
	}
	return best
}
