package search

import "testing"

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
