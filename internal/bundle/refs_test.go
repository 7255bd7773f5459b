package bundle

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestRewriteStrings(t *testing.T) {
	refs := map[string]string{"urn:uuid:1": "Patient/a", "urn:oid:1.2": "Organization/b"}
	repl := func(key, s string) (string, bool) {
		if r, ok := refs[s]; ok {
			return r, true
		}
		if key == "div" {
			return replaceInNarrative(s, func(v string) (string, bool) { r, ok := refs[v]; return r, ok })
		}
		return "", false
	}
	tests := []struct{ name, in, want string }{
		{"reference", `{"subject":{"reference":"urn:uuid:1"}}`, `{"subject":{"reference":"Patient/a"}}`},
		{"keeps layout and order", "{ \"z\" : 1,\n \"a\" : [ \"urn:oid:1.2\" , 2.50 ] }", "{ \"z\" : 1,\n \"a\" : [ \"Organization/b\" , 2.50 ] }"},
		{"keys are not values", `{"urn:uuid:1":"x"}`, `{"urn:uuid:1":"x"}`},
		{"escaped value", `{"reference":"urn:uuid\u003a1"}`, `{"reference":"Patient/a"}`},
		{"escaped quote", `{"a":"say \"urn:uuid:1\"","b":"urn:uuid:1"}`, `{"a":"say \"urn:uuid:1\"","b":"Patient/a"}`},
		{"prefix only", `{"reference":"urn:uuid:10"}`, `{"reference":"urn:uuid:10"}`},
		{"narrative", `{"div":"<div><a href=\"urn:uuid:1\">x</a><img src='urn:oid:1.2'/> urn:uuid:1</div>"}`,
			`{"div":"<div><a href=\"Patient/a\">x</a><img src='Organization/b'/> urn:uuid:1</div>"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(rewriteStrings([]byte(tc.in), repl))
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// transform applies f to every string value (not member names) of a decoded JSON tree.
func transform(v any, f func(string) string) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case []any:
		for i := range x {
			x[i] = transform(x[i], f)
		}
	case map[string]any:
		for k := range x {
			x[k] = transform(x[k], f)
		}
	}
	return v
}

func FuzzRewriteStrings(f *testing.F) {
	for _, s := range []string{
		`{"a":"urn:uuid:1","b":["x","urn:oid:2"],"c":{"d":"<&>"}}`,
		`["urn:x", 1, true, null, {"urn:k": "urn:v"}]`,
		`"urn:solo"`,
		`{"s":"\u00e9\"\\urn:\n"}`,
		`{"a" : "b" , "c":"urn:"}`,
	} {
		f.Add([]byte(s))
	}
	rule := func(s string) string {
		if strings.HasPrefix(s, "urn:") {
			return "R<&>/" + s[4:] + "\u2028"
		}
		return s
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			rewriteStrings(in, func(_, s string) (string, bool) { return rule(s), true }) // must not panic
			return
		}
		out := rewriteStrings(in, func(_, s string) (string, bool) { return rule(s), true })
		if !json.Valid(out) {
			t.Fatalf("invalid output %q from %q", out, in)
		}
		var want, got any
		if err := json.Unmarshal(in, &want); err != nil {
			t.Skip()
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		want = transform(want, rule)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("rewrite of %q = %q; decoded %v, want %v", in, out, got, want)
		}
	})
}
