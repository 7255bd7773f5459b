package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		in   string
		want any // nil with ok false: an error is expected
		ok   bool
	}{
		{`{}`, map[string]any{}, true},
		{` {"a":[1,-2.5e3,true,false,null,"x"]} `, map[string]any{"a": []any{json.Number("1"), json.Number("-2.5e3"), true, false, nil, "x"}}, true},
		{`"\u00e9\n\"\\\/"`, "é\n\"\\/", true},
		{`"\ud83d\ude00"`, "😀", true},
		{`[]`, []any{}, true},
		{`0`, json.Number("0"), true},
		{`{"a":1,"a":2}`, nil, false},
		{`{"a":{"b":1,"b":1}}`, nil, false},
		{`{"a":1,"\u0061":2}`, nil, false}, // the same name, escaped
		{"\"\xff\"", nil, false},
		{`"\ud800"`, nil, false},
		{`"\ude00"`, nil, false},
		{`"\ud800\u0041"`, nil, false},
		{"\"a\tb\"", nil, false},
		{`01`, nil, false},
		{`1.`, nil, false},
		{`-`, nil, false},
		{`1e`, nil, false},
		{`{"a":1,}`, nil, false},
		{`[1,]`, nil, false},
		{`{"a" 1}`, nil, false},
		{`{"a":1} x`, nil, false},
		{`tru`, nil, false},
		{`"abc`, nil, false},
		{`"\x"`, nil, false},
		{``, nil, false},
		{strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth), nil, true},
		{strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1), nil, false},
	}
	for _, tt := range tests {
		got, err := decodeStrict([]byte(tt.in))
		if (err == nil) != tt.ok {
			t.Errorf("decodeStrict(%q) error = %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, errSyntax) {
				t.Errorf("decodeStrict(%q) = %v, want an errSyntax", tt.in, err)
			}
			continue
		}
		if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("decodeStrict(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

// FuzzDecodeStrict checks decodeStrict against encoding/json: it accepts exactly the valid JSON
// documents that have no duplicate names, no invalid UTF-8, no lone surrogate escapes and no
// deeper nesting than maxDepth, and it reads them as encoding/json does.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,{"b":null}]}`, `"\u00e9"`, `{"a":1,"a":2}`, "\"\xff\"", `"\ud800"`, `[[[]]]`, `-0.0e+1`} {
		f.Add([]byte(s))
	}
	names := map[string]string{"a": "a", "b": "b", "resourceType": "resourceType", "é": "é"}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeStrict(data)
		interned, ierr := decodeInterned(data, names)
		if (err == nil) != (ierr == nil) || !reflect.DeepEqual(got, interned) {
			t.Fatalf("decodeInterned(%q) = %#v, %v; decodeStrict gives %#v, %v", data, interned, ierr, got, err)
		}
		if !json.Valid(data) {
			if err == nil {
				t.Fatalf("decodeStrict(%q) accepted invalid JSON", data)
			}
			return
		}
		if err != nil {
			// Only the strict rules may reject valid JSON.
			if !utf8.Valid(data) || bytes.Contains(data, []byte(`\u`)) || bytes.Count(data, []byte("{"))+bytes.Count(data, []byte("[")) > maxDepth || hasDuplicate(data) {
				return
			}
			t.Fatalf("decodeStrict(%q) = %v for valid JSON", data, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeStrict(%q) = %#v, encoding/json reads %#v", data, got, want)
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
