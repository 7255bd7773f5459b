package importer_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/fhirgate/fhirgate/internal/importer"
)

// FuzzImport feeds arbitrary input to both readers: nothing may panic or hang, every record is
// either imported or reported, and no error is an internal one.
func FuzzImport(f *testing.F) {
	for _, s := range []string{
		ndjson,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a"}}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`,
		`{"entry":[{"resource":{"resourceType":"Patient","id":"a"}}],"type":"batch","resourceType":"Bundle"}`,
		`{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Patient/x"}}]}`,
		`{"resourceType":"Bundle","type":"collection","entry":null}`,
		"\x1f\x8b",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	s := newStore(f)
	v := newValidator(f)
	f.Fuzz(func(t *testing.T, data []byte, asNDJSON bool) {
		im, err := importer.New(importer.Options{Backend: s, Validator: v, ChunkSize: 2, Workers: 2, MaxRecordBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		format, name := importer.FormatJSON, "fuzz.json"
		if asNDJSON {
			format, name = importer.FormatNDJSON, "fuzz.ndjson"
		}
		if err := im.Import(context.Background(), name, bytes.NewReader(data), format); err != nil {
			t.Fatalf("Import: %v", err)
		}
		for _, e := range im.Summary().Errors {
			if msg := e.Error(); bytes.Contains([]byte(msg), []byte("internal server error")) {
				t.Errorf("internal error for %q: %s (%v)", data, msg, e.Err)
			}
		}
	})
}
