package validate

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// ErrInvalid is the cause of every error Validate returns: errors.Is(err, validate.ErrInvalid).
var ErrInvalid = errors.New("invalid resource")

// MaxIssues is the most issues one OperationOutcome reports; further ones are summarised in one
// last informational issue.
const MaxIssues = 20

// Validator checks resources against the R4 JSON schema and the rules the schema cannot express.
// It is safe for concurrent use.
type Validator struct {
	model *model

	mu       sync.Mutex // guards compiler, which is not safe for concurrent use
	compiler *jsonschema.Compiler
	types    map[string]*typeSchema // one per R4 resource type; the map is never written after New
}

// typeSchema is the compiled schema of one resource type, compiled on first use.
type typeSchema struct {
	once   sync.Once
	schema *jsonschema.Schema
	err    error
}

// New parses and patches the R4 schema (about 35 ms) and returns a Validator. The schema of each
// resource type is compiled when a resource of that type is first validated: the first type
// costs about 75 ms (the schema document itself is checked then), every further type a few
// milliseconds. CompileAll compiles every type ahead of time.
func New() (*Validator, error) {
	root, err := loadSchema()
	if err != nil {
		return nil, err
	}
	m := buildModel(root)
	inlinePrimitives(root["definitions"].(map[string]any))
	c := jsonschema.NewCompiler()
	c.UseRegexpEngine(compileRegexp)
	if err := c.AddResource(schemaURL, root); err != nil {
		return nil, fmt.Errorf("validate: load the R4 schema: %w", err)
	}
	v := &Validator{
		model:    m,
		compiler: c,
		types:    make(map[string]*typeSchema, len(definitions.ResourceTypes)),
	}
	for _, rt := range definitions.ResourceTypes {
		v.types[rt] = &typeSchema{}
	}
	return v, nil
}

// CompileAll compiles the schema of every R4 resource type now (about 150 ms in all), so that no
// write pays for it later. It reports the first failure.
func (v *Validator) CompileAll() error {
	for _, rt := range definitions.ResourceTypes {
		if _, err := v.schema(rt); err != nil {
			return err
		}
	}
	return nil
}

func (v *Validator) schema(rt string) (*jsonschema.Schema, error) {
	ts, ok := v.types[rt]
	if !ok {
		return nil, fmt.Errorf("validate: %q is not an R4 resource type", rt)
	}
	ts.once.Do(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		ts.schema, ts.err = v.compiler.Compile(schemaURL + "#/definitions/" + rt)
		if ts.err != nil {
			ts.err = fmt.Errorf("validate: compile the schema of %s: %w", rt, ts.err)
		}
	})
	return ts.schema, ts.err
}

// Validate checks that body is a valid R4 resource of type resourceType.
//
// It returns nil, or a *fhir.Error wrapping ErrInvalid: status 400 (code "structure") when body is
// not one well-formed JSON object (duplicate names and invalid UTF-8 included), otherwise 422 with
// one issue per failure (codes "invalid", "structure", "required", "value"), each naming the
// element as a FHIRPath expression such as Patient.name[0].given[1]. Any other error is an
// internal failure of the Validator.
func (v *Validator) Validate(resourceType string, body []byte) error {
	if !fhir.IsResourceType(resourceType) {
		return unprocessable([]fhir.Issue{issue("invalid", "resourceType", "%s is not an R4 resource type", quote(resourceType))})
	}
	tree, err := decodeInterned(body, v.model.names)
	if err != nil {
		return &fhir.Error{
			Status:      http.StatusBadRequest,
			Code:        "structure",
			Diagnostics: "the body is not valid JSON: " + strings.TrimPrefix(err.Error(), errSyntax.Error()+" "),
			Cause:       fmt.Errorf("%w: %w", ErrInvalid, err),
		}
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return &fhir.Error{
			Status:      http.StatusBadRequest,
			Code:        "structure",
			Diagnostics: "the body must be a JSON object",
			Cause:       fmt.Errorf("%w: not a JSON object", ErrInvalid),
		}
	}
	switch rt, _ := obj["resourceType"].(string); {
	case rt == "":
		return unprocessable([]fhir.Issue{issue("required", "resourceType", "resourceType is missing")})
	case rt != resourceType:
		return unprocessable([]fhir.Issue{issue("invalid", "resourceType", "resourceType is %s, but this request is for %s", quote(rt), resourceType)})
	}
	c := checker{v: v}
	c.resource(resourceType, obj, resourceType, nil)
	if c.err != nil {
		return c.err
	}
	if len(c.issues) == 0 {
		return nil
	}
	return unprocessable(c.issues)
}

// maxExpression bounds the length of an expression echoed back: element names come from the
// client, and an outcome must not repeat a huge one.
const maxExpression = 300

func issue(code, expr, format string, args ...any) fhir.Issue {
	is := fhir.Issue{Severity: "error", Code: code, Diagnostics: fmt.Sprintf(format, args...)}
	if len(expr) > maxExpression {
		expr = strings.ToValidUTF8(expr[:maxExpression], "") + "..."
	}
	if expr != "" {
		is.Expression = []string{expr}
		is.Diagnostics = expr + ": " + is.Diagnostics
	}
	return is
}

// unprocessable builds the 422 error: issues sorted by element (the schema library reports in map
// order), at most MaxIssues of them.
func unprocessable(issues []fhir.Issue) *fhir.Error {
	slices.SortFunc(issues, func(a, b fhir.Issue) int {
		return cmp.Or(cmp.Compare(strings.Join(a.Expression, ","), strings.Join(b.Expression, ",")),
			cmp.Compare(a.Diagnostics, b.Diagnostics))
	})
	issues = slices.CompactFunc(issues, func(a, b fhir.Issue) bool {
		return a.Diagnostics == b.Diagnostics && a.Code == b.Code
	})
	n := len(issues)
	if n > MaxIssues {
		issues = append(issues[:MaxIssues:MaxIssues], fhir.Issue{
			Severity:    "information",
			Code:        "informational",
			Diagnostics: fmt.Sprintf("%d further issues are not shown", n-MaxIssues),
		})
	}
	first := issues[0]
	return &fhir.Error{
		Status:      http.StatusUnprocessableEntity,
		Code:        first.Code,
		Diagnostics: first.Diagnostics,
		Expression:  first.Expression,
		Issues:      issues[1:],
		Cause:       fmt.Errorf("%w: %d issues", ErrInvalid, n),
	}
}

// checker holds the state of one Validate call.
type checker struct {
	v      *Validator
	issues []fhir.Issue
	err    error // an internal failure, not an invalid resource
}

func (c *checker) add(code, expr, format string, args ...any) {
	c.issues = append(c.issues, issue(code, expr, format, args...))
}

// scope is what the checks of one resource need to know of its surroundings.
type scope struct {
	// containedIDs maps the ids of the contained resources that local references (#id) in this
	// resource may point to (its own, or its container's when it is contained) to their types.
	containedIDs map[string]string
	// contained reports whether this resource is contained in another.
	contained bool
}

// resource checks one resource (the body, or one nested in it) of the R4 type rt found at path.
func (c *checker) resource(rt string, obj map[string]any, path string, outer *scope) {
	sch, err := c.v.schema(rt)
	if err != nil {
		c.err = err
		return
	}
	if err := sch.Validate(obj); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			c.err = fmt.Errorf("validate: %s: %w", path, err)
			return
		}
		c.schemaIssues(ve, obj, path)
	}
	sc := outer
	if sc == nil {
		sc = &scope{}
		if list, ok := obj["contained"].([]any); ok {
			sc.containedIDs = make(map[string]string, len(list))
			for _, r := range list {
				if m, ok := r.(map[string]any); ok {
					if id, ok := m["id"].(string); ok {
						rt, _ := m["resourceType"].(string)
						sc.containedIDs[id] = rt
					}
				}
			}
		}
	}
	c.object(rt, obj, &loc{root: path}, sc)
}

// printer renders the messages of the rarer schema error kinds.
var printer = message.NewPrinter(language.English)

// schemaIssues turns the leaves of a schema validation error into issues.
func (c *checker) schemaIssues(ve *jsonschema.ValidationError, root any, prefix string) {
	if len(ve.Causes) > 0 {
		for _, cause := range ve.Causes {
			c.schemaIssues(cause, root, prefix)
		}
		return
	}
	expr := expression(prefix, root, ve.InstanceLocation)
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			c.add("required", expr+"."+m, "a required element is missing")
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			c.add("structure", expr+"."+p, "unknown element")
		}
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = fmt.Sprint(w)
		}
		c.add("value", expr, "%s is not one of the allowed codes (%s)", quote(k.Got), strings.Join(want, ", "))
	case *kind.Pattern:
		if k.Got == "" {
			c.add("value", expr, "the value must not be empty")
			return
		}
		typ := c.v.model.patterns[k.Want]
		if typ == "" {
			typ = "value"
		}
		c.add("value", expr, "%s is not a valid %s", quote(k.Got), typ)
	case *kind.Type:
		c.add("structure", expr, "the value is a JSON %s; it must be a JSON %s", k.Got, strings.Join(k.Want, " or "))
	case *kind.Const:
		c.add("value", expr, "the value must be %s", quote(k.Want))
	default:
		c.add("invalid", expr, "%s", ve.ErrorKind.LocalizedString(printer))
	}
}

// quote renders a value from the client for a message, cut to 100 bytes.
func quote(v any) string {
	s, isString := v.(string)
	if !isString {
		s = fmt.Sprint(v)
	}
	if len(s) > 100 {
		s = strings.ToValidUTF8(s[:100], "") + "..."
	}
	if isString {
		return strconv.Quote(s)
	}
	return s
}

// expression turns a JSON pointer into the instance (a list of tokens) into FHIRPath:
// name/0/given/1 under Patient becomes Patient.name[0].given[1].
func expression(prefix string, root any, loc []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	cur := root
	for _, tok := range loc {
		switch x := cur.(type) {
		case []any:
			b.WriteString("[" + tok + "]")
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(x) {
				cur = x[i]
			} else {
				cur = nil
			}
		case map[string]any:
			b.WriteString("." + tok)
			cur = x[tok]
		default:
			b.WriteString("." + tok)
			cur = nil
		}
	}
	return b.String()
}
