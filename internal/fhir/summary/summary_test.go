package summary

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

const patient = `{
  "resourceType": "Patient",
  "id": "p1",
  "meta": {"versionId": "3", "tag": [{"system": "http://example.org/tags", "code": "demo"}]},
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ann Lee</div>"},
  "extension": [{"url": "http://example.org/race", "valueString": "x"}],
  "modifierExtension": [{"url": "http://example.org/confidential", "valueBoolean": true}],
  "identifier": [{"system": "urn:mrn", "value": "12"}],
  "active": true,
  "name": [{"family": "Lee", "given": ["Ann"]}],
  "gender": "female",
  "birthDate": "1980-02-03",
  "_birthDate": {"extension": [{"url": "http://example.org/accuracy", "valueCode": "day"}]},
  "deceasedBoolean": false,
  "maritalStatus": {"text": "married"},
  "multipleBirthInteger": 2,
  "contact": [{"name": {"family": "Lee"}}],
  "communication": [{"language": {"text": "en"}}],
  "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso", "extension": [{"url": "http://example.org/x", "valueString": "y"}]}]
}`

const observation = `{
  "resourceType": "Observation",
  "id": "o1",
  "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">BP</div>"},
  "status": "final",
  "category": [{"text": "vital-signs"}],
  "code": {"text": "Blood pressure"},
  "subject": {"reference": "Patient/p1"},
  "effectiveDateTime": "2024-01-02",
  "interpretation": [{"text": "normal"}],
  "note": [{"text": "seated"}],
  "component": [
    {"code": {"text": "systolic"}, "valueQuantity": {"value": 120}, "interpretation": [{"text": "normal"}], "referenceRange": [{"text": "<130"}]},
    {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80}}
  ]
}`

// keysOf returns the top-level names of a JSON object, in order.
func keysOf(t *testing.T, body []byte) []string {
	t.Helper()
	members, err := parseObject(body)
	if err != nil {
		t.Fatalf("output is not a JSON object: %v\n%s", err, body)
	}
	var names []string
	for _, m := range members {
		names = append(names, m.name)
	}
	return names
}

// tagsOf returns system|code of every meta.tag.
func tagsOf(t *testing.T, body []byte) []string {
	t.Helper()
	var r struct {
		Meta struct {
			Tag []struct{ System, Code string }
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tag := range r.Meta.Tag {
		out = append(out, tag.System+"|"+tag.Code)
	}
	return out
}

const subsetted = SubsettedSystem + "|" + SubsettedCode

func TestApply(t *testing.T) {
	tests := []struct {
		name, mode, body string
		keys             []string
		tags             []string // nil: body returned unchanged
	}{
		{"patient true", "true", patient,
			[]string{"resourceType", "id", "meta", "modifierExtension", "identifier", "active", "name", "gender", "birthDate", "_birthDate", "deceasedBoolean", "link"},
			[]string{"http://example.org/tags|demo", subsetted}},
		{"patient text", "text", patient,
			[]string{"resourceType", "id", "meta", "text", "modifierExtension", "active", "deceasedBoolean", "link"},
			[]string{"http://example.org/tags|demo", subsetted}},
		{"patient data", "data", patient,
			[]string{"resourceType", "id", "meta", "extension", "modifierExtension", "identifier", "active", "name", "gender", "birthDate", "_birthDate", "deceasedBoolean", "maritalStatus", "multipleBirthInteger", "contact", "communication", "link"},
			[]string{"http://example.org/tags|demo", subsetted}},
		{"patient false", "false", patient, nil, nil},
		{"patient empty mode", "", patient, nil, nil},
		{"observation true", "true", observation,
			[]string{"resourceType", "id", "meta", "status", "code", "subject", "effectiveDateTime", "component"},
			[]string{subsetted}},
		{"observation text", "text", observation,
			[]string{"resourceType", "id", "meta", "text", "status", "code"},
			[]string{subsetted}},
		{"observation data", "data", observation,
			[]string{"resourceType", "id", "meta", "status", "category", "code", "subject", "effectiveDateTime", "interpretation", "note", "component"},
			[]string{subsetted}},
		{"nothing to remove is not subsetted", "data", `{"resourceType":"Patient","id":"x","active":true}`, nil, nil},
		{"meta created after id", "true", `{"resourceType":"Patient","id":"x","photo":[{"url":"http://x"}],"active":true}`,
			[]string{"resourceType", "id", "meta", "active"}, []string{subsetted}},
		{"tag added once", "true", `{"resourceType":"Patient","meta":{"tag":[{"system":"` + SubsettedSystem + `","code":"SUBSETTED"}]},"photo":[]}`,
			[]string{"resourceType", "meta"}, []string{subsetted}},
		{"null meta", "text", `{"resourceType":"Patient","meta":null,"active":true,"gender":"male"}`,
			[]string{"resourceType", "meta", "active"}, []string{subsetted}},
		{"data on a type outside R4", "data", `{"resourceType":"Future","text":{"div":""},"x":1}`,
			[]string{"resourceType", "meta", "x"}, []string{subsetted}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Apply(tt.mode, "", []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.tags == nil {
				if string(out) != tt.body {
					t.Fatalf("body changed:\n%s", out)
				}
				return
			}
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			if got := keysOf(t, out); !reflect.DeepEqual(got, tt.keys) {
				t.Errorf("keys = %v\nwant   %v", got, tt.keys)
			}
			if got := tagsOf(t, out); !reflect.DeepEqual(got, tt.tags) {
				t.Errorf("tags = %v, want %v", got, tt.tags)
			}
		})
	}
}

// _summary=true descends into summary backbone elements; datatypes stay whole.
func TestApplyNested(t *testing.T) {
	out, err := Apply("true", "Observation", []byte(observation))
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Meta      map[string]any   `json:"meta"`
		Component []map[string]any `json:"component"`
		Code      map[string]any   `json:"code"`
	}
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Component) != 2 {
		t.Fatalf("components = %v", o.Component)
	}
	for i, c := range o.Component {
		var keys []string
		for k := range c {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !reflect.DeepEqual(keys, []string{"code", "valueQuantity"}) {
			t.Errorf("component[%d] keys = %v", i, keys)
		}
	}
	if o.Code["text"] != "Blood pressure" {
		t.Errorf("code = %v, want it whole", o.Code)
	}
	p, err := Apply("true", "Patient", []byte(patient))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p), `"link":[{"other":{"reference":"Patient/p2"},"type":"seealso"}]`) {
		t.Errorf("link not reduced to its summary elements: %s", p)
	}
	if !strings.Contains(string(p), `"meta":{"versionId":"3","tag":[`) {
		t.Errorf("meta not kept: %s", p)
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		name, mode, rt, body string
		unknown              bool
	}{
		{"count", "count", "", patient, false},
		{"bad mode", "TRUE", "", patient, false},
		{"not json", "true", "", `{"resourceType":`, false},
		{"array", "true", "", `[]`, false},
		{"trailing data", "true", "", `{"resourceType":"Patient"} {}`, false},
		{"no resourceType", "true", "", `{"id":"x"}`, false},
		{"resourceType not a string", "true", "", `{"resourceType":1}`, false},
		{"type mismatch", "true", "Observation", patient, false},
		{"unknown type", "true", "", `{"resourceType":"Future"}`, true},
		{"unknown type text", "text", "", `{"resourceType":"Future"}`, true},
		{"meta not an object", "true", "", `{"resourceType":"Patient","meta":[],"photo":[]}`, false},
		{"tag not an array", "true", "", `{"resourceType":"Patient","meta":{"tag":{}},"photo":[]}`, false},
		{"backbone not an object", "true", "", `{"resourceType":"Patient","link":[{"other":1,"x":[}]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Apply(tt.mode, tt.rt, []byte(tt.body))
			if err == nil {
				t.Fatalf("no error; got %s", out)
			}
			if got := errors.Is(err, ErrUnknownType); got != tt.unknown {
				t.Errorf("errors.Is(ErrUnknownType) = %v: %v", got, err)
			}
		})
	}
}

func TestElements(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		elements []string
		keys     []string // nil: body returned unchanged
	}{
		{"named plus mandatory and modifiers", observation, []string{"subject"},
			[]string{"resourceType", "id", "meta", "status", "code", "subject"}},
		{"type prefix", patient, []string{"Patient.name", "Observation.code"},
			[]string{"resourceType", "id", "meta", "modifierExtension", "active", "name", "deceasedBoolean", "link"}},
		{"choice by base name", observation, []string{"effective[x]"},
			[]string{"resourceType", "id", "meta", "status", "code", "effectiveDateTime"}},
		{"choice by base without [x]", patient, []string{"multipleBirth", "deceased"},
			[]string{"resourceType", "id", "meta", "modifierExtension", "active", "deceasedBoolean", "multipleBirthInteger", "link"}},
		{"choice by variant", patient, []string{"deceasedBoolean", "birthDate"},
			[]string{"resourceType", "id", "meta", "modifierExtension", "active", "birthDate", "_birthDate", "deceasedBoolean", "link"}},
		{"nested path selects nothing", observation, []string{"component.code", " "},
			[]string{"resourceType", "id", "meta", "status", "code"}},
		{"component kept whole", observation, []string{"component"},
			[]string{"resourceType", "id", "meta", "status", "code", "component"}},
		{"type outside R4", `{"resourceType":"Future","a":1,"b":2}`, []string{"a"},
			[]string{"resourceType", "meta", "a"}},
		{"empty list", patient, nil, nil},
		{"everything named", `{"resourceType":"Patient","id":"x","active":true}`, []string{"active"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Elements([]byte(tt.body), tt.elements)
			if err != nil {
				t.Fatal(err)
			}
			if tt.keys == nil {
				if string(out) != tt.body {
					t.Fatalf("body changed:\n%s", out)
				}
				return
			}
			if got := keysOf(t, out); !reflect.DeepEqual(got, tt.keys) {
				t.Errorf("keys = %v\nwant   %v", got, tt.keys)
			}
			if tags := tagsOf(t, out); !slices.Contains(tags, subsetted) {
				t.Errorf("tags = %v, want SUBSETTED", tags)
			}
		})
	}
	if _, err := Elements([]byte(`{"id":1}`), []string{"id"}); err == nil {
		t.Error("Elements accepted a body without resourceType")
	}
	if out, err := Elements([]byte(observation), []string{"component"}); err != nil || !strings.Contains(string(out), `"referenceRange"`) {
		t.Errorf("_elements must keep the named element whole: %s, %v", out, err)
	}
}

// Every R4 resource type has a table with its id and meta as summary elements, and every
// backbone a table points to exists.
func TestTablesCoverR4(t *testing.T) {
	for _, rt := range definitions.ResourceTypes {
		table, ok := tables[rt]
		if !ok {
			t.Errorf("%s: no summary table", rt)
			continue
		}
		if !Known(rt) {
			t.Errorf("Known(%s) = false", rt)
		}
		for _, name := range []string{"id", "meta", "implicitRules"} {
			if table[name].flags&summary == 0 {
				t.Errorf("%s.%s is not a summary element", rt, name)
			}
		}
		domain := !slices.Contains([]string{"Binary", "Bundle", "Parameters"}, rt) // not DomainResources
		if domain && table["modifierExtension"].flags&modifier == 0 {
			t.Errorf("%s.modifierExtension is not a modifier", rt)
		}
	}
	for path, table := range tables {
		if !strings.Contains(path, ".") && !slices.Contains(definitions.ResourceTypes, path) {
			t.Errorf("table %s is not an R4 resource type", path)
		}
		for name, e := range table {
			if e.backbone == "" {
				continue
			}
			if _, ok := tables[e.backbone]; !ok {
				t.Errorf("%s.%s: backbone %s has no table", path, name, e.backbone)
			}
			if e.flags&summary == 0 {
				t.Errorf("%s.%s: backbone of a non-summary element", path, name)
			}
		}
	}
	if Known("Future") {
		t.Error(`Known("Future") = true`)
	}
}

func FuzzApply(f *testing.F) {
	for _, s := range []string{patient, observation, `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient"},"search":{"mode":"match"},"x":1}]}`,
		`{"resourceType":"Questionnaire","item":[{"linkId":"1","item":[{"linkId":"2"}]}]}`, `{"resourceType":"Patient","meta":{"tag":null},"_gender":{}}`, `[]`, `"x"`} {
		for _, mode := range []string{"true", "text", "data", "false"} {
			f.Add(mode, s, "name,gender")
		}
	}
	f.Fuzz(func(t *testing.T, mode, body, elements string) {
		out, err := Apply(mode, "", []byte(body))
		if err == nil && json.Valid([]byte(body)) && !json.Valid(out) {
			t.Fatalf("Apply(%q) output is not JSON: %s", mode, out)
		}
		out, err = Elements([]byte(body), strings.Split(elements, ","))
		if err == nil && json.Valid([]byte(body)) && !json.Valid(out) {
			t.Fatalf("Elements output is not JSON: %s", out)
		}
		if err == nil {
			// Subsetting twice changes nothing more.
			again, err := Elements(out, strings.Split(elements, ","))
			if err != nil || string(again) != string(out) {
				t.Fatalf("Elements is not idempotent: %s\n%s (%v)", out, again, err)
			}
		}
	})
}
