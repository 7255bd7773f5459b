package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxDepth bounds the nesting of JSON objects and arrays. The deepest R4 resources (Questionnaire
// items, nested Bundles) stay far below it; the bound keeps every recursive walk small.
const maxDepth = 100

// errSyntax is the sentinel every decode failure wraps.
var errSyntax = errors.New("invalid JSON")

// decodeStrict parses one JSON document into the value types the schema validator reads:
// map[string]any, []any, string, json.Number, bool and nil.
//
// It is stricter than encoding/json, on purpose: a name repeated within one object, invalid UTF-8
// and nesting deeper than maxDepth are errors. encoding/json keeps the last duplicate and
// replaces bad bytes with U+FFFD, so two parsers could read one body differently; a security
// gateway must not store a body that another reader could interpret another way.
func decodeStrict(data []byte) (any, error) { return decodeInterned(data, nil) }

// decodeInterned is decodeStrict that takes property names found in names from there instead of
// allocating them (names holds every property name of the R4 schema; it is only read).
func decodeInterned(data []byte, names map[string]string) (any, error) {
	d := decoder{data: data, names: names}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

type decoder struct {
	data  []byte
	pos   int
	names map[string]string
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errSyntax, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value(depth int) (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("unexpected end of input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("unexpected character %q", c)
	}
}

func (d *decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.errorf("invalid literal")
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) object(depth int) (any, error) {
	if depth > maxDepth {
		return nil, d.errorf("nested deeper than %d levels", maxDepth)
	}
	d.pos++ // {
	m := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected a property name")
		}
		start := d.pos
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			d.pos = start
			return nil, d.errorf("duplicate property %q", k)
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':'")
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in an object")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return m, nil
		default:
			return nil, d.errorf("expected ',' or '}'")
		}
	}
}

func (d *decoder) array(depth int) (any, error) {
	if depth > maxDepth {
		return nil, d.errorf("nested deeper than %d levels", maxDepth)
	}
	d.pos++ // [
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		d.skipSpace()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("unexpected end of input in an array")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return a, nil
		default:
			return nil, d.errorf("expected ',' or ']'")
		}
	}
}

// key reads a property name, interned when it is a known one.
func (d *decoder) key() (string, error) {
	if d.names != nil {
		// The common case: a name without escapes, closed before any backslash.
		end := d.pos + 1
		for end < len(d.data) && d.data[end] != '"' && d.data[end] != '\\' && d.data[end] >= 0x20 {
			end++
		}
		if end < len(d.data) && d.data[end] == '"' {
			if s, ok := d.names[string(d.data[d.pos+1:end])]; ok {
				d.pos = end + 1
				return s, nil
			}
		}
	}
	return d.str()
}

// str reads a string literal. Strings without escapes (nearly all of them) are sliced directly;
// the rare escaped one is handed to encoding/json after the scan has checked its syntax.
func (d *decoder) str() (string, error) {
	start := d.pos
	d.pos++ // opening quote
	escaped := false
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			raw := d.data[start+1 : d.pos-1]
			if !utf8.Valid(raw) {
				d.pos = start
				return "", d.errorf("a string is not valid UTF-8")
			}
			if !escaped {
				return string(raw), nil
			}
			var s string
			if err := json.Unmarshal(d.data[start:d.pos], &s); err != nil {
				d.pos = start
				return "", d.errorf("invalid string: %v", err)
			}
			return s, nil
		case c == '\\':
			escaped = true
			if d.pos+1 >= len(d.data) {
				return "", d.errorf("unterminated string")
			}
			switch d.data[d.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos += 2
			case 'u':
				if d.pos+6 > len(d.data) || !isHex4(d.data[d.pos+2:d.pos+6]) {
					return "", d.errorf("invalid \\u escape")
				}
				if lone, err := d.loneSurrogate(); lone {
					return "", err
				}
				d.pos += 6
			default:
				return "", d.errorf("invalid escape")
			}
		case c < 0x20:
			return "", d.errorf("control character in a string")
		default:
			d.pos++
		}
	}
	return "", d.errorf("unterminated string")
}

// loneSurrogate reports whether the \u escape at d.pos is half of a UTF-16 surrogate pair
// without its other half: encoding/json would silently turn it into U+FFFD.
func (d *decoder) loneSurrogate() (bool, error) {
	r := hex4(d.data[d.pos+2 : d.pos+6])
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return true, d.errorf("unpaired UTF-16 surrogate escape")
	case r >= 0xD800 && r <= 0xDBFF:
		next := d.data[d.pos+6:]
		if len(next) < 6 || next[0] != '\\' || next[1] != 'u' || !isHex4(next[2:6]) {
			return true, d.errorf("unpaired UTF-16 surrogate escape")
		}
		if lo := hex4(next[2:6]); lo < 0xDC00 || lo > 0xDFFF {
			return true, d.errorf("unpaired UTF-16 surrogate escape")
		}
		d.pos += 6 // the low half is consumed with the high half
	}
	return false, nil
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// number reads a number with the RFC 8259 grammar and keeps its text (json.Number), so that
// decimals keep their precision as FHIR requires.
func (d *decoder) number() (any, error) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.pos < len(d.data) && d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		d.digits()
	default:
		return nil, d.errorf("invalid number")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.digits() == 0 {
			return nil, d.errorf("invalid number")
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return nil, d.errorf("invalid number")
		}
	}
	return json.Number(d.data[start:d.pos]), nil
}

func (d *decoder) digits() int {
	n := 0
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
		n++
	}
	return n
}
