package importer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Format is how an input is laid out.
type Format int

const (
	// FormatAuto picks NDJSON or JSON from the file name (.ndjson, .jsonl or .json, each
	// optionally .gz).
	FormatAuto Format = iota
	// FormatNDJSON is one resource per line.
	FormatNDJSON
	// FormatJSON is one JSON document: a Bundle or a single resource.
	FormatJSON
)

// FormatOf returns the format of a file name, or FormatAuto when the name says nothing.
func FormatOf(name string) Format {
	n := strings.ToLower(strings.TrimSuffix(strings.ToLower(name), ".gz"))
	switch {
	case strings.HasSuffix(n, ".ndjson"), strings.HasSuffix(n, ".jsonl"):
		return FormatNDJSON
	case strings.HasSuffix(n, ".json"):
		return FormatJSON
	}
	return FormatAuto
}

// ImportPath imports a file, or every .json, .ndjson and .jsonl file (optionally .gz) under a
// directory, in name order except that Synthea's hospitalInformation* and
// practitionerInformation* files go first (patients refer to them). It returns an error only
// for what stops the import (an unreadable path, the context done); bad records are in the
// Summary.
func (im *Importer) ImportPath(ctx context.Context, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("importer: %w", err)
	}
	if !st.IsDir() {
		return im.ImportFile(ctx, path)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && FormatOf(p) != FormatAuto {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("importer: %w", err)
	}
	slices.SortStableFunc(files, func(a, b string) int {
		if d := fileRank(a) - fileRank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, f := range files {
		if err := im.ImportFile(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

func fileRank(path string) int {
	base := filepath.Base(path)
	switch {
	case strings.HasPrefix(base, "hospitalInformation"):
		return 0
	case strings.HasPrefix(base, "practitionerInformation"):
		return 1
	}
	return 2
}

// ImportFile imports one file; its format comes from its name, and gzip is detected from its
// content.
func (im *Importer) ImportFile(ctx context.Context, path string) error {
	format := FormatOf(path)
	if format == FormatAuto {
		return fmt.Errorf("importer: %s: unknown file type (want .json, .ndjson or .jsonl, optionally .gz)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("importer: %w", err)
	}
	defer f.Close()
	return im.Import(ctx, path, f, format)
}

// Import reads one input in the given format (FormatAuto is taken as JSON when the name says
// nothing). name labels the errors. gzip-compressed input is detected and decompressed.
func (im *Importer) Import(ctx context.Context, name string, r io.Reader, format Format) error {
	im.mu.Lock()
	im.files++
	im.mu.Unlock()
	br := bufio.NewReaderSize(r, 256<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			im.fail(RecordError{File: name, Entry: -1, Err: fhir.Invalid("", "the gzip header is not valid: %v", err)})
			return nil
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	if format == FormatAuto {
		format = FormatOf(name)
	}
	if format == FormatNDJSON {
		return im.readNDJSON(ctx, name, br)
	}
	return im.readJSON(ctx, name, br)
}

// readNDJSON streams one resource per line. Blank lines are skipped; a line longer than
// MaxRecordBytes is reported and skipped.
func (im *Importer) readNDJSON(ctx context.Context, name string, br *bufio.Reader) error {
	s := im.newStream(ctx, name)
	line := 0
	var ferr error
	for {
		buf, tooLong, err := readLine(br, im.opts.MaxRecordBytes)
		if len(buf) > 0 || tooLong || err == nil {
			line++
		}
		if tooLong {
			im.fail(RecordError{File: name, Line: line, Entry: -1, Err: fhir.Invalid("", "the line is longer than %d bytes", im.opts.MaxRecordBytes)})
		} else if b := bytes.TrimSpace(buf); len(b) > 0 {
			if ferr = s.add(record{line: line, entry: -1, body: b}); ferr != nil {
				break
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			im.fail(RecordError{File: name, Line: line, Entry: -1, Err: fhir.Invalid("", "reading stopped: %v", err)})
			break
		}
	}
	if err := s.close(); err != nil {
		return err
	}
	return ferr
}

// readLine returns the next line without its newline, in a buffer of its own. A line longer
// than max is consumed and reported with tooLong and no content.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max+1 { // +1: the newline
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			line = nil
		}
		return bytes.TrimSuffix(line, []byte("\n")), tooLong, err
	}
}

// readJSON streams one JSON document. A Bundle's entries are decoded one at a time: collection
// and searchset entries go to the resource stream, batch entries are processed in chunks, and
// a transaction is processed whole (it is atomic). Any other document is imported as one
// resource (a document or message Bundle included). When a Bundle's type follows its entries
// in the file, the entries are read into memory first.
func (im *Importer) readJSON(ctx context.Context, name string, br *bufio.Reader) error {
	dec := json.NewDecoder(br)
	fileErr := func(format string, args ...any) error {
		im.fail(RecordError{File: name, Entry: -1, Err: fhir.Invalid("", format, args...)})
		return nil
	}
	tok, err := dec.Token()
	if err != nil {
		return fileErr("the file is not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fileErr("the file is not a JSON object")
	}
	type member struct {
		key string
		val json.RawMessage
	}
	var (
		members      []member // every member but entry, to rebuild a non-Bundle resource
		resourceType string
		bundleType   string
		entries      []json.RawMessage // read whole when the type was not known yet
		streamed     bool
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fileErr("the file is not valid JSON: %v", err)
		}
		key, _ := tok.(string)
		if key == "entry" && resourceType == "Bundle" && isEntryType(bundleType) && !streamed && entries == nil {
			if stop, err := im.streamEntries(ctx, name, dec, bundleType); stop || err != nil {
				return err
			}
			streamed = true
			continue
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fileErr("the file is not valid JSON: %v", err)
		}
		switch key {
		case "resourceType":
			_ = json.Unmarshal(raw, &resourceType)
		case "type":
			if resourceType == "Bundle" || resourceType == "" {
				_ = json.Unmarshal(raw, &bundleType)
			}
		case "entry":
			if err := json.Unmarshal(raw, &entries); err != nil {
				entries = nil
			}
		}
		members = append(members, member{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return fileErr("the file is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fileErr("the file holds more than one JSON value")
	}
	if resourceType == "Bundle" && isEntryType(bundleType) {
		if streamed {
			return nil
		}
		return im.bufferedEntries(ctx, name, bundleType, entries)
	}
	if streamed {
		// Never reached: entries stream only once the type is known to be an entry type.
		return errors.New("importer: internal: streamed a Bundle of another type")
	}
	// One resource: rebuild the object from its members.
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(m.val)
	}
	buf.WriteByte('}')
	if buf.Len() > im.opts.MaxRecordBytes {
		return fileErr("the resource is larger than %d bytes", im.opts.MaxRecordBytes)
	}
	s := im.newStream(ctx, name)
	ferr := s.add(record{entry: -1, body: buf.Bytes()})
	if err := s.close(); err != nil {
		return err
	}
	return ferr
}

// isEntryType reports whether a Bundle of this type is imported entry by entry.
func isEntryType(t string) bool {
	switch t {
	case "collection", "searchset", "transaction", "batch":
		return true
	}
	return false
}
