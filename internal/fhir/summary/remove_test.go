package summary

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRemove(t *testing.T) {
	obs := `{"resourceType":"Observation","id":"o1","meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]},` +
		`"text":{"status":"generated","div":"<div>viral load 1200</div>"},"status":"final","code":{"coding":[{"code":"25836-8"}],"text":"HIV viral load"},` +
		`"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":1200},"_valueString":{"id":"x"},"note":[{"text":"n1"},{"text":"n2"}],` +
		`"component":[{"code":{"text":"a"},"valueQuantity":{"value":1}},{"code":{"text":"b"},"valueString":"s"}]}`
	tests := []struct {
		name        string
		paths       []string
		want        string // the members after resourceType, id and meta, in order
		wantRemoved bool
	}{
		{"choice and its twin", []string{"value[x]"}, `text,status,code,subject,note,component`, true},
		{"several", []string{"text", "note", "code"}, `status,subject,valueQuantity,_valueString,component`, true},
		{"inside arrays", []string{"component.value[x]"}, `text,status,code,subject,valueQuantity,_valueString,note,component`, true},
		{"inside a datatype", []string{"code.text"}, `text,status,code,subject,valueQuantity,_valueString,note,component`, true},
		{"absent element", []string{"interpretation"}, `text,status,code,subject,valueQuantity,_valueString,note,component`, false},
		{"never meta", []string{"meta", "id", "resourceType"}, `text,status,code,subject,valueQuantity,_valueString,note,component`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, removed, err := Remove([]byte(obs), tt.paths)
			if err != nil {
				t.Fatal(err)
			}
			if removed != tt.wantRemoved {
				t.Fatalf("removed = %v, want %v", removed, tt.wantRemoved)
			}
			members, _, err := parseResource(out)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range members[3:] {
				names = append(names, m.name)
			}
			if got := strings.Join(names, ","); got != tt.want {
				t.Errorf("members %s, want %s\n%s", got, tt.want, out)
			}
			subsetted := strings.Contains(string(out), `"SUBSETTED"`)
			if subsetted != tt.wantRemoved {
				t.Errorf("SUBSETTED tag present = %v\n%s", subsetted, out)
			}
			if !json.Valid(out) {
				t.Errorf("invalid JSON %s", out)
			}
		})
	}
	out, _, err := Remove([]byte(obs), []string{"component.value[x]", "code.text"})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{`"value":1}`, `"valueString":"s"`, `"HIV viral load"`} {
		if strings.Contains(string(out), gone) {
			t.Errorf("%s still in %s", gone, out)
		}
	}
	if !strings.Contains(string(out), `"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]`) {
		t.Errorf("labels lost: %s", out)
	}
	if _, _, err := Remove([]byte(`[1]`), []string{"note"}); err == nil {
		t.Error("a non-object body was accepted")
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		typ, path string
		ok        bool
	}{
		{"Observation", "value[x]", true},
		{"Observation", "note", true},
		{"Observation", "component.value[x]", true},
		{"Observation", "component.interpretation", true},
		{"Observation", "code.text", true},
		{"Observation", "code.coding.display", true},
		{"Patient", "address", true},
		{"Patient", "deceased[x]", true},
		{"Observation", "text", true},
		{"Observation", "contained", true},
		{"Observation", "value", false},          // a choice is named value[x]
		{"Observation", "valueQuantity", true},   // or by one variant
		{"Observation", "note[x]", false},        // not a choice
		{"Observation", "meta", false},           // carries the labels
		{"Observation", "id", false},             //
		{"Observation", "status.value", false},   // into a primitive
		{"Observation", "value[x].value", false}, // into every variant
		{"Observation", "nothing", false},
		{"Observation", "_status", false},
		{"Observation", "", false},
		{"Observation", "note.", false},
		{"NotAType", "note", false},
	}
	for _, tt := range tests {
		err := CheckPath(tt.typ, tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("CheckPath(%s, %q) = %v, want ok=%v", tt.typ, tt.path, err, tt.ok)
		}
	}
}

func FuzzRemove(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Observation","id":"o","valueQuantity":{"value":1},"component":[{"valueString":"x"}]}`), "component.value[x]")
	f.Add([]byte(`{"resourceType":"Patient","meta":{"tag":[]},"address":[{"line":["a"]}]}`), "address")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		if path == "" || strings.Contains(path, "..") {
			return
		}
		out, removed, err := Remove(body, []string{path})
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid output %q", out)
		}
		if removed && !strings.Contains(string(out), SubsettedCode) {
			t.Fatalf("removed without the SUBSETTED tag: %s", out)
		}
	})
}
