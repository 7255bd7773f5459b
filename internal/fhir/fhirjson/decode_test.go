package fhirjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var (
	strict  = Options{Strict: true, UseNumber: true, MaxDepth: 100}
	lenient = Options{MaxDepth: 256}
)

func TestDecode(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	tests := []struct {
		in   string
		opts Options
		want any // nil with ok false: an error is expected
		ok   bool
	}{
		// Strict, json.Number.
		{`{}`, strict, map[string]any{}, true},
		{` {"a":[1,-2.5e3,true,false,null,"x"]} `, strict, map[string]any{"a": []any{json.Number("1"), json.Number("-2.5e3"), true, false, nil, "x"}}, true},
		{`"\u00e9\n\"\\\/"`, strict, "é\n\"\\/", true},
		{`"\ud83d\ude00"`, strict, "😀", true},
		{`[]`, strict, []any{}, true},
		{`0`, strict, json.Number("0"), true},
		{`1e400`, strict, json.Number("1e400"), true},
		{`{"a":1,"a":2}`, strict, nil, false},
		{`{"a":{"b":1,"b":1}}`, strict, nil, false},
		{`{"a":1,"\u0061":2}`, strict, nil, false}, // the same name, escaped
		{"\"\xff\"", strict, nil, false},
		{"\"\xff\\n\"", strict, nil, false},
		{`"\ud800"`, strict, nil, false},
		{`"\ude00"`, strict, nil, false},
		{`"\ud800\u0041"`, strict, nil, false},
		{deep(100), strict, nil, true},
		{deep(101), strict, nil, false},
		// Lenient, float64: as encoding/json.
		{`{"a":1,"a":2}`, lenient, map[string]any{"a": 2.0}, true},
		{`{"a":1,"\u0061":"x"}`, lenient, map[string]any{"a": "x"}, true},
		{"\"a\xffb\"", lenient, "a\uFFFDb", true},
		{"\"\xff\\n\"", lenient, "\uFFFD\n", true},
		{`"\ud800"`, lenient, "\uFFFD", true},
		{`[1,-2.5e3,0.1]`, lenient, []any{1.0, -2500.0, 0.1}, true},
		{`1e400`, lenient, nil, false},
		{deep(256), lenient, nil, true},
		{deep(257), lenient, nil, false},
		// Lenient, json.Number; strict, float64.
		{`[1e400,-0.0]`, Options{UseNumber: true}, []any{json.Number("1e400"), json.Number("-0.0")}, true},
		{`[1,2.5]`, Options{Strict: true}, []any{1.0, 2.5}, true},
		{deep(10000), Options{}, nil, true}, // no MaxDepth: no bound
	}
	// Errors that do not depend on the mode.
	for _, in := range []string{"\"a\tb\"", `01`, `1.`, `-`, `1e`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `{"a":1} x`, `tru`, `"abc`, `"\x"`, `"\u12"`, `"\`, ``, `{`, `[`, `{"a"`, `{1:2}`} {
		tests = append(tests, struct {
			in   string
			opts Options
			want any
			ok   bool
		}{in, strict, nil, false}, struct {
			in   string
			opts Options
			want any
			ok   bool
		}{in, lenient, nil, false})
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in), tt.opts)
		if (err == nil) != tt.ok {
			t.Errorf("Decode(%.40q, %+v) error = %v, want ok %v", tt.in, tt.opts, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("Decode(%q, %+v) = %v, want an ErrSyntax", tt.in, tt.opts, err)
			}
			continue
		}
		if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%q, %+v) = %#v, want %#v", tt.in, tt.opts, got, tt.want)
		}
	}
}

func TestDecodeErrorText(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"a":2}`: `invalid JSON at byte 7: duplicate property "a"`,
		"[\"\xff\"]":    `invalid JSON at byte 1: a string is not valid UTF-8`,
		`[1,]`:          `invalid JSON at byte 3: unexpected character ']'`,
		`[[1]]`:         `invalid JSON at byte 1: nested deeper than 1 levels`,
	} {
		_, err := Decode([]byte(in), Options{Strict: true, UseNumber: true, MaxDepth: 1})
		if err == nil || err.Error() != want {
			t.Errorf("Decode(%q) = %v, want %s", in, err, want)
		}
	}
}

func TestDecodeInterned(t *testing.T) {
	names := map[string]string{"resourceType": "resourceType"}
	data := []byte(`{"resourceType":"Patient"}`)
	v, err := Decode(data, Options{Names: names})
	if err != nil || !reflect.DeepEqual(v, map[string]any{"resourceType": "Patient"}) {
		t.Fatalf("Decode = %#v, %v", v, err)
	}
	with := testing.AllocsPerRun(100, func() { _, _ = Decode(data, Options{Names: names}) })
	without := testing.AllocsPerRun(100, func() { _, _ = Decode(data, Options{}) })
	if with >= without {
		t.Errorf("decoding an interned name: %v allocations, %v without interning", with, without)
	}
}

var fuzzNames = map[string]string{"a": "a", "b": "b", "resourceType": "resourceType", "é": "é"}

var fuzzSeeds = []string{
	`{"a":[1,2.5,{"b":null}]}`, `"\u00e9"`, `{"a":1,"a":2}`, "\"\xff\"", `"\ud800"`, `[[[]]]`, `-0.0e+1`,
	`{"resourceType":"Patient","name":[{"family":"Ab","given":["C"]}],"birthDate":"1970-01-01"}`,
	`{"a":"\u00e9\n","b":[1,-2.5e3,true,false,null],"a":"dup"}`, `"\ud83d\ude00"`, `[]`, `{}`, `0`,
	`1e400`, `{"a":}`, `[1,]`, `"\x"`, ` {"resourceType" : "Patient" } `, `{"x":"\ud800"}`, `01`,
	`"` + "\x01" + `"`,
}

// FuzzDecodeStrict checks the strict mode against encoding/json: it accepts exactly the valid
// JSON documents that have no duplicate names, no invalid UTF-8, no lone surrogate escapes and no
// deeper nesting than MaxDepth, and it reads them as encoding/json does (json.Number or float64).
// Interning names changes nothing.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data, strict)
		interned, ierr := Decode(data, Options{Strict: true, UseNumber: true, MaxDepth: 100, Names: fuzzNames})
		if (err == nil) != (ierr == nil) || !reflect.DeepEqual(got, interned) {
			t.Fatalf("interned Decode(%q) = %#v, %v; without names %#v, %v", data, interned, ierr, got, err)
		}
		if !json.Valid(data) {
			if err == nil {
				t.Fatalf("Decode(%q) accepted invalid JSON", data)
			}
			return
		}
		if err != nil {
			// Only the strict rules may reject valid JSON.
			if !utf8.Valid(data) || bytes.Contains(data, []byte(`\u`)) || bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > strict.MaxDepth || hasDuplicate(data) {
				return
			}
			t.Fatalf("Decode(%q) = %v for valid JSON", data, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) = %#v, encoding/json reads %#v", data, got, want)
		}
		// float64 numbers: the same document, or an error for a number out of range.
		fgot, ferr := Decode(data, Options{Strict: true, MaxDepth: 100, Names: fuzzNames})
		var fwant any
		fwantErr := json.Unmarshal(data, &fwant)
		if (ferr == nil) != (fwantErr == nil) || ferr == nil && !reflect.DeepEqual(fgot, fwant) {
			t.Fatalf("float64 Decode(%q) = %#v, %v; encoding/json reads %#v, %v", data, fgot, ferr, fwant, fwantErr)
		}
	})
}

// FuzzDecode checks the lenient mode against encoding/json: on valid UTF-8 input both accept the
// same documents and produce the same values, with float64 and with json.Number; a document the
// strict mode accepts reads the same in both modes.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	lenientNames := lenient
	lenientNames.Names = fuzzNames
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data, lenientNames)
		plain, perr := Decode(data, lenient)
		if (err == nil) != (perr == nil) || !reflect.DeepEqual(got, plain) {
			t.Fatalf("interned Decode(%q) = %#v, %v; without names %#v, %v", data, got, err, plain, perr)
		}
		if json.Valid(data) && err != nil && !strings.Contains(err.Error(), "nested deeper than") && !strings.Contains(err.Error(), "number out of range") {
			t.Fatalf("Decode(%q) = %v for valid JSON", data, err)
		}
		if !json.Valid(data) && err == nil {
			t.Fatalf("Decode(%q) accepted invalid JSON", data)
		}
		if sv, serr := Decode(data, Options{Strict: true, MaxDepth: lenient.MaxDepth}); serr == nil && (err != nil || !reflect.DeepEqual(sv, got)) {
			t.Fatalf("Decode(%q) = %#v, %v; strict reads %#v", data, got, err, sv)
		}
		if !utf8.Valid(data) {
			return // unescaped invalid bytes: one U+FFFD per run here, one per byte in encoding/json
		}
		if err != nil && strings.Contains(err.Error(), "nested deeper than") {
			return
		}
		var want any
		wantErr := json.Unmarshal(data, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("Decode(%q) error = %v, encoding/json error = %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode(%q) = %#v, encoding/json = %#v", data, got, want)
		}
		ngot, nerr := Decode(data, Options{UseNumber: true, MaxDepth: lenient.MaxDepth, Names: fuzzNames})
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var nwant any
		nwantErr := dec.Decode(&nwant)
		if nwantErr == nil && dec.InputOffset() != int64(len(bytes.TrimRight(data, " \t\r\n"))) {
			nwantErr = errors.New("data after the value")
		}
		if (nerr == nil) != (nwantErr == nil) || nerr == nil && !reflect.DeepEqual(ngot, nwant) {
			t.Fatalf("json.Number Decode(%q) = %#v, %v; encoding/json reads %#v, %v", data, ngot, nerr, nwant, nwantErr)
		}
	})
}

// hasDuplicate reports whether some object in the valid JSON data repeats a name.
func hasDuplicate(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		names  map[string]bool
		object bool
		key    bool // the next string token is a name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{names: map[string]bool{}, object: v == '{', key: v == '{'})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if top.names[v] {
					return true
				}
				top.names[v] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}
