package bundle

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"
)

func ops(t testing.TB, s string) []patchOp {
	t.Helper()
	bin := `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + base64.StdEncoding.EncodeToString([]byte(s)) + `"}`
	o, err := decodePatch([]byte(bin))
	if err != nil {
		t.Fatalf("decodePatch(%s): %v", s, err)
	}
	return o
}

// The examples of RFC 6902 appendix A, and the edge cases around them.
func TestApplyPatch(t *testing.T) {
	tests := []struct {
		name, doc, patch, want string // want "" means the patch must fail
	}{
		{"add member", `{"foo":"bar"}`, `[{"op":"add","path":"/baz","value":"qux"}]`, `{"baz":"qux","foo":"bar"}`},
		{"add array element", `{"foo":["bar","baz"]}`, `[{"op":"add","path":"/foo/1","value":"qux"}]`, `{"foo":["bar","qux","baz"]}`},
		{"add to the end", `{"foo":["bar"]}`, `[{"op":"add","path":"/foo/-","value":["x"]}]`, `{"foo":["bar",["x"]]}`},
		{"remove member", `{"baz":"qux","foo":"bar"}`, `[{"op":"remove","path":"/baz"}]`, `{"foo":"bar"}`},
		{"remove element", `{"foo":["bar","qux","baz"]}`, `[{"op":"remove","path":"/foo/1"}]`, `{"foo":["bar","baz"]}`},
		{"replace", `{"baz":"qux","foo":"bar"}`, `[{"op":"replace","path":"/baz","value":"boo"}]`, `{"baz":"boo","foo":"bar"}`},
		{"replace element", `{"a":[1,2,3]}`, `[{"op":"replace","path":"/a/1","value":9}]`, `{"a":[1,9,3]}`},
		{"move member", `{"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}}`, `[{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]`, `{"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}}`},
		{"move element", `{"foo":["all","grass","cows","eat"]}`, `[{"op":"move","from":"/foo/1","path":"/foo/3"}]`, `{"foo":["all","cows","eat","grass"]}`},
		{"copy is deep", `{"a":{"b":1}}`, `[{"op":"copy","from":"/a","path":"/c"},{"op":"replace","path":"/c/b","value":2}]`, `{"a":{"b":1},"c":{"b":2}}`},
		{"test success", `{"baz":"qux","foo":["a",2,"c"]}`, `[{"op":"test","path":"/baz","value":"qux"},{"op":"test","path":"/foo/1","value":2.0}]`, `{"baz":"qux","foo":["a",2,"c"]}`},
		{"test failure", `{"baz":"qux"}`, `[{"op":"test","path":"/baz","value":"bar"}]`, ""},
		{"nested add", `{"foo":"bar"}`, `[{"op":"add","path":"/child","value":{"grandchild":{}}}]`, `{"child":{"grandchild":{}},"foo":"bar"}`},
		{"add to a missing parent", `{"foo":"bar"}`, `[{"op":"add","path":"/baz/bat","value":"qux"}]`, ""},
		{"escaped pointer", `{"a/b":1,"m~n":2}`, `[{"op":"remove","path":"/a~1b"},{"op":"replace","path":"/m~0n","value":3}]`, `{"m~n":3}`},
		{"null value", `{"a":1}`, `[{"op":"add","path":"/b","value":null}]`, `{"a":1,"b":null}`},
		{"remove a missing member", `{"a":1}`, `[{"op":"remove","path":"/b"}]`, ""},
		{"index out of range", `{"a":[1]}`, `[{"op":"add","path":"/a/2","value":0}]`, ""},
		{"leading zero index", `{"a":[1,2]}`, `[{"op":"remove","path":"/a/01"}]`, ""},
		{"move into itself", `{"a":{"b":{}}}`, `[{"op":"move","from":"/a","path":"/a/b/c"}]`, ""},
		{"replace a missing member", `{"a":1}`, `[{"op":"replace","path":"/b","value":2}]`, ""},
		{"not a pointer", `{"a":1}`, `[{"op":"remove","path":"a"}]`, ""},
		{"remove the root", `{"a":1}`, `[{"op":"remove","path":""}]`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := applyPatch([]byte(tc.doc), ops(t, tc.patch))
			if tc.want == "" {
				if err == nil {
					t.Fatalf("patch applied: %s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDecodePatchRejects(t *testing.T) {
	for name, res := range map[string]string{
		"FHIRPath Patch":  `{"resourceType":"Parameters","parameter":[]}`,
		"other resource":  `{"resourceType":"Patient"}`,
		"wrong type":      `{"resourceType":"Binary","contentType":"application/json","data":"W10="}`,
		"not base64":      `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"%%%"}`,
		"not an array":    `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"e30="}`,
		"unknown op":      `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + base64.StdEncoding.EncodeToString([]byte(`[{"op":"merge","path":"/a"}]`)) + `"}`,
		"missing value":   `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + base64.StdEncoding.EncodeToString([]byte(`[{"op":"add","path":"/a"}]`)) + `"}`,
		"missing path":    `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + base64.StdEncoding.EncodeToString([]byte(`[{"op":"remove"}]`)) + `"}`,
		"move needs from": `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + base64.StdEncoding.EncodeToString([]byte(`[{"op":"move","path":"/a"}]`)) + `"}`,
	} {
		if _, err := decodePatch([]byte(res)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzApplyPatch(f *testing.F) {
	f.Add(`{"a":[1,2,{"b":"c"}],"d":{"e":null}}`, `[{"op":"move","from":"/a/2","path":"/d/f"},{"op":"copy","from":"/d","path":"/a/-"},{"op":"test","path":"/a/0","value":1.0}]`)
	f.Add(`{"a":1}`, `[{"op":"replace","path":"","value":[]},{"op":"add","path":"/0","value":1}]`)
	f.Add(`[]`, `[{"op":"add","path":"/-","value":{"x":[]}},{"op":"remove","path":"/0/x"}]`)
	f.Fuzz(func(t *testing.T, doc, patch string) {
		var o []patchOp
		if err := json.Unmarshal([]byte(patch), &o); err != nil || !json.Valid([]byte(doc)) {
			return
		}
		for _, op := range o {
			if op.Path == nil || ((op.Op == "move" || op.Op == "copy") && op.From == nil) || ((op.Op == "add" || op.Op == "replace" || op.Op == "test") && op.Value == nil) {
				return
			}
		}
		out, err := applyPatch([]byte(doc), o)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid JSON %q", out)
		}
	})
}
