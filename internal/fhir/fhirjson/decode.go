package fhirjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrSyntax is the sentinel every Decode failure wraps. Its text is "invalid JSON"; the wrapping
// error reads "invalid JSON at byte N: reason".
var ErrSyntax = errors.New("invalid JSON")

// Options selects how Decode reads a document.
type Options struct {
	// Strict makes a name repeated within one object, invalid UTF-8 in a string and a \u escape
	// that is half of a UTF-16 surrogate pair errors. Otherwise the last duplicate wins and both
	// kinds of bad text become U+FFFD, as with encoding/json.
	Strict bool
	// UseNumber keeps numbers as json.Number (their text, exact). Otherwise they are float64 and
	// a number out of float64 range is an error, as with encoding/json.
	UseNumber bool
	// Names, when not nil, interns property names: a name written without escapes that is a key
	// of Names is returned as the map's value instead of a new string. Decode only reads it.
	Names map[string]string
	// MaxDepth bounds the nesting of objects and arrays: a document whose top-level value is an
	// object or array has depth 1, and an object or array deeper than MaxDepth is an error. Zero
	// or less means no bound beyond the stack.
	MaxDepth int
}

// Decode parses data, exactly one JSON value with optional surrounding white space, into
// map[string]any, []any, string, json.Number or float64 (Options.UseNumber), bool and nil.
// Every error wraps ErrSyntax and names the byte offset where reading failed.
func Decode(data []byte, opts Options) (any, error) {
	d := decoder{data: data, opts: opts}
	if d.opts.MaxDepth <= 0 {
		d.opts.MaxDepth = int(^uint(0) >> 1)
	}
	d.space()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, d.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

type decoder struct {
	data []byte
	pos  int
	opts Options
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, d.pos, fmt.Sprintf(format, args...))
}

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value reads one value; depth is the number of objects and arrays around it.
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
		s, err := d.str(false)
		if err != nil {
			return nil, err
		}
		return s, nil
	case c == '-' || c >= '0' && c <= '9':
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
	if depth > d.opts.MaxDepth {
		return nil, d.errorf("nested deeper than %d levels", d.opts.MaxDepth)
	}
	d.pos++ // {
	m := make(map[string]any, 8)
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, nil
	}
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("expected a property name")
		}
		start := d.pos
		k, err := d.str(true)
		if err != nil {
			return nil, err
		}
		if d.opts.Strict {
			if _, dup := m[k]; dup {
				d.pos = start
				return nil, d.errorf("duplicate property %q", k)
			}
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("expected ':'")
		}
		d.pos++
		d.space()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		m[k] = v
		d.space()
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
	if depth > d.opts.MaxDepth {
		return nil, d.errorf("nested deeper than %d levels", d.opts.MaxDepth)
	}
	d.pos++ // [
	a := make([]any, 0, 4)
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		d.space()
		v, err := d.value(depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.space()
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

// plain marks the bytes a string literal holds as themselves: printable ASCII but the quote and
// the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string literal; key says it is a property name, interned when it is written
// without escapes and found in Options.Names. A string of plain ASCII (nearly all of them) is
// read in one tight pass and sliced directly; others go on in strRest.
func (d *decoder) str(key bool) (string, error) {
	start := d.pos
	i := start + 1 // after the opening quote
	for i < len(d.data) && plain[d.data[i]] {
		i++
	}
	if i < len(d.data) && d.data[i] == '"' {
		d.pos = i + 1
		raw := d.data[start+1 : i]
		if key && d.opts.Names != nil {
			if s, ok := d.opts.Names[string(raw)]; ok {
				return s, nil
			}
		}
		return string(raw), nil
	}
	d.pos = i
	return d.strRest(start, key)
}

// strRest reads on the string literal that starts at start, from d.pos, where str stopped: at
// an escape, a control character, a non-ASCII byte or the end of the input. An escaped string is
// handed to encoding/json after the scan has checked its syntax.
func (d *decoder) strRest(start int, key bool) (string, error) {
	escaped, ascii := false, true
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			raw := d.data[start+1 : d.pos-1]
			if !escaped && key && d.opts.Names != nil {
				if s, ok := d.opts.Names[string(raw)]; ok {
					return s, nil
				}
			}
			if !ascii && !utf8.Valid(raw) {
				if d.opts.Strict {
					d.pos = start
					return "", d.errorf("a string is not valid UTF-8")
				}
				if !escaped {
					return strings.ToValidUTF8(string(raw), "\uFFFD"), nil
				}
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
				if d.opts.Strict {
					if err := d.loneSurrogate(); err != nil {
						return "", err
					}
				}
				d.pos += 6
			default:
				return "", d.errorf("invalid escape")
			}
		case c < 0x20:
			return "", d.errorf("control character in a string")
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			d.pos++
		}
	}
	return "", d.errorf("unterminated string")
}

// loneSurrogate returns an error when the \u escape at d.pos is half of a UTF-16 surrogate pair
// without its other half (encoding/json would silently turn it into U+FFFD). A high half followed
// by its low half consumes the low half's escape.
func (d *decoder) loneSurrogate() error {
	r := hex4(d.data[d.pos+2 : d.pos+6])
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return d.errorf("unpaired UTF-16 surrogate escape")
	case r >= 0xD800 && r <= 0xDBFF:
		next := d.data[d.pos+6:]
		if len(next) < 6 || next[0] != '\\' || next[1] != 'u' || !isHex4(next[2:6]) {
			return d.errorf("unpaired UTF-16 surrogate escape")
		}
		if lo := hex4(next[2:6]); lo < 0xDC00 || lo > 0xDFFF {
			return d.errorf("unpaired UTF-16 surrogate escape")
		}
		d.pos += 6 // the low half is consumed with the high half
	}
	return nil
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

// number reads a number with the RFC 8259 grammar, as json.Number (its text, so that decimals
// keep their precision as FHIR requires) or as float64.
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
	if d.opts.UseNumber {
		return json.Number(d.data[start:d.pos]), nil
	}
	f, err := strconv.ParseFloat(string(d.data[start:d.pos]), 64)
	if err != nil {
		d.pos = start
		return nil, d.errorf("number out of range")
	}
	return f, nil
}

func (d *decoder) digits() int {
	n := 0
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
		n++
	}
	return n
}
