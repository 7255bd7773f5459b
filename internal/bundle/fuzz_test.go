package bundle_test

import (
	"context"
	"encoding/json"
	"testing"
)

// FuzzProcess feeds arbitrary bodies to the Bundle reader and processor: nothing may panic, a
// rejected Bundle is a client error (never a 500), and an accepted one has one response entry
// per request entry.
func FuzzProcess(f *testing.F) {
	for _, s := range []string{
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:1"}},"request":{"method":"POST","url":"Observation"}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/1/_history/2"}},{"request":{"method":"DELETE","url":"Patient?identifier=a|b"}}]}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","id":"x"},"request":{"method":"PUT","url":"Patient/x","ifMatch":"W/\"1\""}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"GET","url":"http://fhir.test/fhir/Patient?name=a&_count=2"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=x|y"}},"request":{"method":"POST","url":"Observation","ifNoneExist":"code=a"}}]}`,
		`{"resourceType":"Bundle","type":"collection"}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	p, _ := newProcessor(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := p.Process(context.Background(), body)
		if err != nil {
			if s := statusOf(err); s < 400 || s >= 500 {
				t.Fatalf("status %d for %q: %v", s, body, err)
			}
			return
		}
		var in struct {
			Entry []json.RawMessage `json:"entry"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted a body that is not a Bundle: %q", body)
		}
		if len(resp.Entry) != len(in.Entry) {
			t.Fatalf("%d response entries for %d entries", len(resp.Entry), len(in.Entry))
		}
		for i, e := range resp.Entry {
			if e.Response == nil {
				t.Fatalf("entry %d of %q has no response", i, body)
			}
			if len(e.Response.Status) < 3 || e.Response.Status[0] == '5' {
				t.Errorf("entry %d of %q: status %s, outcome %s", i, body, e.Response.Status, e.Response.Outcome)
			}
		}
	})
}
