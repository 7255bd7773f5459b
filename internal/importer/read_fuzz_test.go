package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// readerUnderTest is an Importer whose readers hand their records to collectors instead of a
// backend, so that the fuzzer exercises the parsing alone (FuzzImport covers the whole path).
func readerUnderTest() (*Importer, *[]record, *[][]fhir.BundleEntry) {
	im := &Importer{
		opts: Options{ChunkSize: 3, Workers: 2, MaxRecordBytes: 512, MaxErrors: 1 << 20,
			Now: time.Now, Log: slog.New(slog.DiscardHandler)},
		byType: map[string]int64{},
	}
	var recs []record
	var bundles [][]fhir.BundleEntry
	im.chunkFn = func(_ context.Context, _ string, c []record) error {
		recs = append(recs, c...)
		return nil
	}
	im.bundleFn = func(_ context.Context, _, _ string, entries []fhir.BundleEntry, _ int) error {
		bundles = append(bundles, entries)
		return nil
	}
	return im, &recs, &bundles
}

func FuzzReaders(f *testing.F) {
	for _, s := range []string{
		"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n\n{\"resourceType\":\"Observation\"}\r\nnot json\n",
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a"}},{"fullUrl":"x"},{"resource":null}]}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`,
		`{"entry":[{"resource":{"resourceType":"Patient","id":"a"}}],"type":"batch","resourceType":"Bundle"}`,
		`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition"}}]}`,
		`{"resourceType":"Bundle","type":"searchset","entry":null}`,
		`{"type":{"coding":[]},"resourceType":"Device","id":"d"}`,
		`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","text":"` + string(bytes.Repeat([]byte("x"), 600)) + `"}}]}`,
		"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
		"",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, asNDJSON bool) {
		im, recs, bundles := readerUnderTest()
		format := FormatJSON
		if asNDJSON {
			format = FormatNDJSON
		}
		if err := im.Import(context.Background(), "fuzz", bytes.NewReader(data), format); err != nil {
			t.Fatalf("Import: %v", err)
		}
		lastLine, lastEntry := 0, -1
		for _, r := range *recs {
			if r.err == nil && !json.Valid(r.body) {
				t.Fatalf("record %+v passed the checks but is not JSON", r)
			}
			if len(r.body) > im.opts.MaxRecordBytes && r.entry >= 0 {
				t.Fatalf("entry %d of %d bytes passed the size limit", r.entry, len(r.body))
			}
			if asNDJSON {
				if r.line <= lastLine {
					t.Fatalf("line %d after line %d", r.line, lastLine)
				}
				lastLine = r.line
			} else if r.entry >= 0 {
				if r.entry <= lastEntry {
					t.Fatalf("entry %d after entry %d", r.entry, lastEntry)
				}
				lastEntry = r.entry
			}
		}
		if asNDJSON {
			// Every non-blank line is a record or an error (a bad gzip stream is one error).
			nonBlank := 0
			if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
				for _, l := range bytes.Split(data, []byte("\n")) {
					if len(bytes.TrimSpace(l)) > 0 {
						nonBlank++
					}
				}
				if got := len(*recs) + int(im.failures.Load()); got != nonBlank {
					t.Fatalf("%d records and %d errors for %d lines", len(*recs), im.failures.Load(), nonBlank)
				}
			}
		}
		for _, b := range *bundles {
			for _, e := range b {
				if len(e.Resource) > im.opts.MaxRecordBytes {
					t.Fatalf("a Bundle entry of %d bytes passed the size limit", len(e.Resource))
				}
			}
		}
	})
}
