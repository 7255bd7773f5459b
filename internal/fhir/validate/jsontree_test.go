package validate

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
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
