package search

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzExtract runs extraction over arbitrary bodies of several resource types: it must never
// panic, and every entry it returns must carry a parameter code and a type.
func FuzzExtract(f *testing.F) {
	seeds := []string{
		observationJSON, patientJSON,
		`{"resourceType":"Observation","valueQuantity":{"value":"x"},"effectivePeriod":{"start":5}}`,
		`{"resourceType":"Patient","name":"x","telecom":{"system":"email"},"deceasedBoolean":"yes"}`,
		`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Composition","id":"c"}}]}`,
		`{"resourceType":"Encounter","period":{"start":"2020-13-01"}}`,
		`{"resourceType":"Observation","subject":{"reference":"http://x/Patient/1/_history/2"}}`,
		`{"resourceType":"Group","characteristic":[{"code":{"coding":[{"code":"c"}]},"valueBoolean":true}]}`,
		`null`, `[]`, `{}`, `"x"`,
	}
	for _, s := range seeds {
		f.Add("Observation", s)
		f.Add("Patient", s)
	}
	x := extractor(f)
	f.Fuzz(func(t *testing.T, typ, body string) {
		entries, err := x.Extract(typ, []byte(body))
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Param == "" || e.Type == "" {
				t.Fatalf("entry without parameter or type: %+v", e)
			}
			if e.Type == TypeComposite && e.Second == nil {
				t.Fatalf("composite entry without a second component: %+v", e)
			}
			if e.Type == TypeDate && e.Low > e.High {
				t.Fatalf("date entry with low > high: %+v", e)
			}
		}
	})
}

// FuzzDecodeJSON checks the extraction decoder against encoding/json: on valid UTF-8 input both
// accept the same documents and produce the same values.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		observationJSON, patientJSON, `{"a":"\u00e9\n","b":[1,-2.5e3,true,false,null],"a":"dup"}`,
		`"\ud83d\ude00"`, `[]`, `{}`, `0`, `-0.0`, `1e400`, `{"a":}`, `[1,]`, `"\x"`, ` {"resourceType" : "Patient" } `,
		`{"x":"\ud800"}`, `01`, `"` + "\x01" + `"`,
	} {
		f.Add([]byte(s))
	}
	m, err := elementModel()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := m.decodeJSON(data)
		var want any
		wantErr := json.Unmarshal(data, &want)
		if !utf8.Valid(data) {
			return // encoding/json and decodeJSON replace invalid bytes differently
		}
		if errors.Is(err, errJSON) && strings.Contains(err.Error(), "nested too deeply") {
			return
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeJSON(%q) error = %v, encoding/json error = %v", data, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeJSON(%q) = %#v, encoding/json = %#v", data, got, want)
		}
	})
}
