package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// streamEntries reads the entry array of a Bundle of type typ from dec, one entry at a time.
// stop is true when the file cannot be read further (its error is reported).
func (im *Importer) streamEntries(ctx context.Context, name string, dec *json.Decoder, typ string) (stop bool, err error) {
	tok, err := dec.Token()
	if err != nil {
		im.fail(RecordError{File: name, Entry: -1, Err: fhir.Invalid("Bundle.entry", "the file is not valid JSON: %v", err)})
		return true, nil
	}
	if tok == nil { // "entry": null
		return false, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		im.fail(RecordError{File: name, Entry: -1, Err: fhir.Invalid("Bundle.entry", "Bundle.entry is not an array")})
		return true, nil
	}
	var (
		s       *stream
		pending []fhir.BundleEntry // transaction: every entry; batch: one chunk
		offset  int                // the index of pending[0]
	)
	if typ == "collection" || typ == "searchset" {
		s = im.newStream(ctx, name)
	}
	for i := 0; dec.More(); i++ {
		var e fhir.BundleEntry
		if derr := dec.Decode(&e); derr != nil {
			im.fail(RecordError{File: name, Entry: i, Err: fhir.Invalid("Bundle.entry", "the entry is not valid JSON: %v", derr)})
			stop = true
			break
		}
		if len(e.Resource) > im.opts.MaxRecordBytes {
			im.fail(RecordError{File: name, Entry: i, Err: fhir.Invalid("Bundle.entry.resource", "the resource is larger than %d bytes", im.opts.MaxRecordBytes)})
			if typ == "transaction" {
				stop = true // a transaction is imported whole or not at all
				break
			}
			if typ == "batch" {
				if len(pending) > 0 {
					if err = im.bundleFn(ctx, name, typ, pending, offset); err != nil {
						break
					}
					pending = nil
				}
				offset = i + 1
			}
			continue
		}
		if s != nil {
			if len(e.Resource) == 0 {
				im.fail(RecordError{File: name, Entry: i, Err: fhir.Invalid("Bundle.entry.resource", "the entry has no resource")})
				continue
			}
			if err = s.add(record{entry: i, body: e.Resource}); err != nil {
				break
			}
			continue
		}
		pending = append(pending, e)
		if typ == "batch" && len(pending) >= im.opts.ChunkSize {
			if err = im.bundleFn(ctx, name, typ, pending, offset); err != nil {
				break
			}
			offset = i + 1
			pending = nil
		}
	}
	if s != nil {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	} else if err == nil && !stop && (len(pending) > 0 || typ == "transaction") {
		// A transaction that could not be read whole is not run at all.
		err = im.bundleFn(ctx, name, typ, pending, offset)
	}
	if err != nil || stop {
		return true, err
	}
	if _, terr := dec.Token(); terr != nil { // ']'
		im.fail(RecordError{File: name, Entry: -1, Err: fhir.Invalid("Bundle.entry", "the file is not valid JSON: %v", terr)})
		return true, nil
	}
	return false, nil
}

// bufferedEntries imports entries that were read whole (the Bundle's type came after them).
func (im *Importer) bufferedEntries(ctx context.Context, name, typ string, raws []json.RawMessage) error {
	if typ == "collection" || typ == "searchset" {
		s := im.newStream(ctx, name)
		var ferr error
		for i, raw := range raws {
			var e fhir.BundleEntry
			if err := json.Unmarshal(raw, &e); err != nil || len(e.Resource) == 0 {
				im.fail(RecordError{File: name, Entry: i, Err: fhir.Invalid("Bundle.entry.resource", "the entry has no resource")})
				continue
			}
			if ferr = s.add(record{entry: i, body: e.Resource}); ferr != nil {
				break
			}
		}
		if err := s.close(); err != nil {
			return err
		}
		return ferr
	}
	entries := make([]fhir.BundleEntry, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &entries[i]); err != nil {
			im.fail(RecordError{File: name, Entry: i, Err: fhir.Invalid("Bundle.entry", "the entry is not a Bundle entry: %v", err)})
			if typ == "transaction" {
				return nil
			}
		}
	}
	return im.bundleFn(ctx, name, typ, entries, 0)
}

// runBundle processes transaction or batch entries through the bundle Processor; offset is the
// index of entries[0] in the file's Bundle.
func (im *Importer) runBundle(ctx context.Context, name, typ string, entries []fhir.BundleEntry, offset int) error {
	if offset == 0 {
		im.mu.Lock()
		im.bundles++
		im.mu.Unlock()
	}
	resp, err := im.processor.ProcessEntries(ctx, typ, entries)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		im.fail(RecordError{File: name, Entry: -1, Err: err})
		return nil
	}
	for i, e := range resp.Entry {
		if e.Response == nil {
			continue
		}
		code, _, _ := strings.Cut(e.Response.Status, " ")
		status, _ := strconv.Atoi(code)
		if status >= 400 {
			im.fail(RecordError{File: name, Entry: offset + i, Err: outcomeError(status, e.Response.Outcome)})
			continue
		}
		req := entries[i].Request
		if req == nil || e.Response.Location == "" {
			continue
		}
		if m := strings.ToUpper(strings.TrimSpace(req.Method)); m != http.MethodPost && m != http.MethodPut {
			continue
		}
		typ, _, _ := strings.Cut(e.Response.Location, "/")
		im.done(typ, 1)
	}
	return nil
}

var entryPrefix = regexp.MustCompile(`^Bundle\.entry\[\d+\]: `)

// outcomeError turns a batch entry's response outcome back into an error.
func outcomeError(status int, outcome json.RawMessage) error {
	var oo fhir.OperationOutcome
	_ = json.Unmarshal(outcome, &oo)
	fe := &fhir.Error{Status: status, Code: "processing"}
	var msgs []string
	for i, is := range oo.Issue {
		if i == 0 {
			fe.Code = is.Code
		}
		msgs = append(msgs, entryPrefix.ReplaceAllString(is.Diagnostics, ""))
	}
	fe.Diagnostics = strings.Join(msgs, "; ")
	if fe.Diagnostics == "" {
		fe.Diagnostics = fmt.Sprintf("status %d", status)
	}
	return fe
}
