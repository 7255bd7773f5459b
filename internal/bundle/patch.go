package bundle

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// patchOp is one JSON Patch operation (RFC 6902). Path, From and Value are nil when absent
// ("value": null is present).
type patchOp struct {
	Op    string
	Path  *string
	From  *string
	Value *json.RawMessage
}

// UnmarshalJSON reads an operation, telling an absent value from a null one.
func (o *patchOp) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*o = patchOp{}
	for k, v := range m {
		switch k {
		case "op":
			if err := json.Unmarshal(v, &o.Op); err != nil {
				return fmt.Errorf("op: %w", err)
			}
		case "path", "from":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if k == "path" {
				o.Path = &s
			} else {
				o.From = &s
			}
		case "value":
			o.Value = &v
		}
	}
	return nil
}

// jsonPatchType is the media type of a JSON Patch document.
const jsonPatchType = "application/json-patch+json"

// decodePatch reads the JSON Patch carried by a PATCH entry: a Binary resource whose contentType
// is application/json-patch+json and whose data is the base64 patch document (R4
// http.html#patch). FHIRPath Patch (a Parameters resource) is not supported.
func decodePatch(resource []byte) ([]patchOp, error) {
	h, err := fhir.DecodeHeader(resource)
	if err != nil {
		return nil, err
	}
	if h.ResourceType == "Parameters" {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", "FHIRPath Patch is not supported; send a JSON Patch as a Binary of type %s", jsonPatchType)
	}
	if h.ResourceType != "Binary" {
		return nil, fhir.Invalid("Bundle.entry.resource", "a PATCH entry carries a Binary holding a JSON Patch, not a %s", h.ResourceType)
	}
	var bin struct {
		ContentType string `json:"contentType"`
		Data        string `json:"data"`
	}
	if err := json.Unmarshal(resource, &bin); err != nil {
		return nil, fhir.Invalid("Binary", "the Binary is not valid: %v", err)
	}
	if ct, _, _ := strings.Cut(bin.ContentType, ";"); strings.TrimSpace(ct) != jsonPatchType {
		return nil, fhir.Errorf(http.StatusBadRequest, "not-supported", "PATCH supports %s, not %q", jsonPatchType, bin.ContentType)
	}
	doc, err := base64.StdEncoding.DecodeString(bin.Data)
	if err != nil {
		return nil, fhir.Invalid("Binary.data", "Binary.data is not base64: %v", err)
	}
	var ops []patchOp
	if err := json.Unmarshal(doc, &ops); err != nil {
		return nil, fhir.Invalid("Binary.data", "the JSON Patch is not an array of operations: %v", err)
	}
	for i, op := range ops {
		bad := func(format string, args ...any) error {
			return fhir.Invalid("Binary.data", "JSON Patch operation %d: %s", i, fmt.Sprintf(format, args...))
		}
		if op.Path == nil {
			return nil, bad("path is missing")
		}
		switch op.Op {
		case "add", "replace", "test":
			if op.Value == nil {
				return nil, bad("%s needs a value", op.Op)
			}
		case "move", "copy":
			if op.From == nil {
				return nil, bad("%s needs from", op.Op)
			}
		case "remove":
		default:
			return nil, bad("unknown op %q", op.Op)
		}
	}
	return ops, nil
}

// patchFailed is the 422 of a patch that cannot be applied.
func patchFailed(i int, format string, args ...any) error {
	return fhir.Errorf(http.StatusUnprocessableEntity, "processing", "JSON Patch operation %d: %s", i, fmt.Sprintf(format, args...))
}

// applyPatch applies ops to the JSON document body and returns the result.
func applyPatch(body []byte, ops []patchOp) ([]byte, error) {
	doc, err := decodeNumbers(body)
	if err != nil {
		return nil, err
	}
	for i, op := range ops {
		path, err := pointer(*op.Path)
		if err != nil {
			return nil, patchFailed(i, "%v", err)
		}
		var value any
		if op.Value != nil {
			if value, err = decodeNumbers(*op.Value); err != nil {
				return nil, patchFailed(i, "value: %v", err)
			}
		}
		switch op.Op {
		case "add":
			doc, err = addAt(doc, path, value)
		case "remove":
			doc, _, err = removeAt(doc, path)
		case "replace":
			if len(path) == 0 {
				doc = value
				break
			}
			if _, err = get(doc, path); err == nil {
				if doc, _, err = removeAt(doc, path); err == nil {
					doc, err = addAt(doc, path, value)
				}
			}
		case "move", "copy":
			var from []string
			if from, err = pointer(*op.From); err != nil {
				break
			}
			if op.Op == "move" && len(from) < len(path) && strings.HasPrefix(*op.Path, *op.From+"/") {
				err = fmt.Errorf("cannot move %s into itself", *op.From)
				break
			}
			var v any
			if v, err = get(doc, from); err != nil {
				break
			}
			if op.Op == "move" {
				if doc, _, err = removeAt(doc, from); err != nil {
					break
				}
			} else {
				v = deepCopy(v)
			}
			doc, err = addAt(doc, path, v)
		case "test":
			var cur any
			if cur, err = get(doc, path); err == nil && !jsonEqual(cur, value) {
				err = fmt.Errorf("test failed at %q", *op.Path)
			}
		}
		if err != nil {
			return nil, patchFailed(i, "%v", err)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("bundle: encode the patched resource: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func decodeNumbers(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// pointer splits a JSON Pointer (RFC 6901) into its unescaped tokens.
func pointer(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("path %q is not a JSON Pointer", s)
	}
	toks := strings.Split(s[1:], "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks, nil
}

// arrayIndex reads an array index token; "-" (and n itself) is allowed only for add.
func arrayIndex(tok string, n int, forAdd bool) (int, error) {
	if forAdd && tok == "-" {
		return n, nil
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') || strings.TrimLeft(tok, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not an array index", tok)
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i > n || (!forAdd && i == n) {
		return 0, fmt.Errorf("index %s is out of range", tok)
	}
	return i, nil
}

func get(doc any, path []string) (any, error) {
	cur := doc
	for _, tok := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			cur = v
		case []any:
			i, err := arrayIndex(tok, len(c), false)
			if err != nil {
				return nil, err
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("cannot descend into a %T at %q", cur, tok)
		}
	}
	return cur, nil
}

// edit replaces the container that holds path's last token with fn(container, last token).
func edit(doc any, path []string, fn func(container any, last string) (any, error)) (any, error) {
	if len(path) == 1 {
		return fn(doc, path[0])
	}
	switch c := doc.(type) {
	case map[string]any:
		child, ok := c[path[0]]
		if !ok {
			return nil, fmt.Errorf("no member %q", path[0])
		}
		nc, err := edit(child, path[1:], fn)
		if err != nil {
			return nil, err
		}
		c[path[0]] = nc
		return c, nil
	case []any:
		i, err := arrayIndex(path[0], len(c), false)
		if err != nil {
			return nil, err
		}
		nc, err := edit(c[i], path[1:], fn)
		if err != nil {
			return nil, err
		}
		c[i] = nc
		return c, nil
	}
	return nil, fmt.Errorf("cannot descend into a %T at %q", doc, path[0])
}

func addAt(doc any, path []string, v any) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	return edit(doc, path, func(c any, last string) (any, error) {
		switch c := c.(type) {
		case map[string]any:
			c[last] = v
			return c, nil
		case []any:
			i, err := arrayIndex(last, len(c), true)
			if err != nil {
				return nil, err
			}
			c = append(c, nil)
			copy(c[i+1:], c[i:])
			c[i] = v
			return c, nil
		}
		return nil, fmt.Errorf("cannot add to a %T", c)
	})
}

func removeAt(doc any, path []string) (any, any, error) {
	if len(path) == 0 {
		return nil, nil, fmt.Errorf("cannot remove the whole resource")
	}
	var removed any
	doc, err := edit(doc, path, func(c any, last string) (any, error) {
		switch c := c.(type) {
		case map[string]any:
			v, ok := c[last]
			if !ok {
				return nil, fmt.Errorf("no member %q", last)
			}
			removed = v
			delete(c, last)
			return c, nil
		case []any:
			i, err := arrayIndex(last, len(c), false)
			if err != nil {
				return nil, err
			}
			removed = c[i]
			return append(c[:i:i], c[i+1:]...), nil
		}
		return nil, fmt.Errorf("cannot remove from a %T", c)
	})
	return doc, removed, err
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// jsonEqual compares decoded JSON values, numbers by value (1.0 equals 1).
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		fx, okx := new(big.Rat).SetString(string(x))
		fy, oky := new(big.Rat).SetString(string(y))
		return okx && oky && fx.Cmp(fy) == 0
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}
