package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Options configures an Importer. Backend is required; zero values of the rest are documented.
type Options struct {
	// Backend receives the resources.
	Backend backend.Backend
	// Validator checks each resource before it is written; nil imports resources that pass the
	// structural checks (a JSON object of a known R4 type with a valid id) unvalidated.
	Validator bundle.Validator
	// Parse parses the conditional criteria of transaction and batch Bundles (ifNoneExist,
	// conditional references); nil makes entries that need it fail.
	Parse bundle.ParseFunc
	// BaseURL is the FHIR base, for absolute request URLs in Bundles.
	BaseURL string
	// ChunkSize is the number of single resources written per backend transaction; 500 when 0.
	ChunkSize int
	// Workers is the number of goroutines validating records; GOMAXPROCS when 0.
	Workers int
	// MaxRecordBytes bounds one NDJSON line or one Bundle entry; 64 MiB when 0.
	MaxRecordBytes int
	// MaxErrors bounds the errors kept in the Summary (more are counted); 1000 when 0.
	MaxErrors int
	// Now is the clock, for the rate in the Summary; time.Now when nil.
	Now func() time.Time
	// Log receives the causes of internal errors; slog.Default when nil.
	Log *slog.Logger
}

// Importer loads files into a backend. Its methods may be called from one goroutine at a time,
// except Progress, which any goroutine may call at any time.
type Importer struct {
	opts      Options
	processor *bundle.Processor
	start     time.Time

	resources atomic.Int64
	failures  atomic.Int64

	// chunkFn and bundleFn are where records leave the readers: writeChunk and runBundle, except
	// in the readers' own fuzz test.
	chunkFn  func(ctx context.Context, file string, recs []record) error
	bundleFn func(ctx context.Context, name, typ string, entries []fhir.BundleEntry, offset int) error

	mu      sync.Mutex
	byType  map[string]int64
	errs    []RecordError
	files   int
	bundles int
}

// New returns an Importer.
func New(opts Options) (*Importer, error) {
	if opts.Backend == nil {
		return nil, errors.New("importer: a Backend is required")
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 500
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = 64 << 20
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = 1000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	im := &Importer{
		opts: opts,
		processor: &bundle.Processor{
			Backend:    opts.Backend,
			Validator:  opts.Validator,
			BaseURL:    opts.BaseURL,
			Parse:      opts.Parse,
			MaxEntries: -1,
			KeepIDs:    true,
			Now:        opts.Now,
			Log:        opts.Log,
		},
		start:  opts.Now(),
		byType: map[string]int64{},
	}
	im.chunkFn, im.bundleFn = im.writeChunk, im.runBundle
	return im, nil
}

// RecordError is one record that was not imported.
type RecordError struct {
	// File is the input's name.
	File string
	// Line is the 1-based line of an NDJSON record; 0 otherwise.
	Line int
	// Entry is the 0-based index of a Bundle entry; -1 when the error is not about one entry.
	Entry int
	// Err is what went wrong.
	Err error
}

func (e RecordError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Entry >= 0 {
		fmt.Fprintf(&b, ": entry[%d]", e.Entry)
	}
	b.WriteString(": ")
	b.WriteString(publicText(e.Err))
	return b.String()
}

func (e RecordError) Unwrap() error { return e.Err }

// publicText is the message of err as the FHIR API would show it: the diagnostics of a
// *fhir.Error or a sentinel, and "internal error" otherwise (its cause is logged).
func publicText(err error) string {
	status, oo := fhir.OutcomeFromError(err)
	var parts []string
	for _, is := range oo.Issue {
		if is.Diagnostics != "" {
			parts = append(parts, is.Diagnostics)
		}
	}
	if status >= http.StatusInternalServerError {
		parts = append(parts, err.Error())
	}
	return strings.Join(parts, "; ")
}

// Progress is a snapshot of a running import.
type Progress struct {
	// Resources is the number of resources written so far.
	Resources int64
	// Errors is the number of records that failed so far.
	Errors int64
}

// Progress returns the counts so far; it is safe to call from any goroutine.
func (im *Importer) Progress() Progress {
	return Progress{Resources: im.resources.Load(), Errors: im.failures.Load()}
}

// Summary is the outcome of an import.
type Summary struct {
	// Files and Bundles count the inputs read and the transaction or batch Bundles processed.
	Files, Bundles int
	// Resources is the number of resources written; ByType splits it by resource type.
	Resources int64
	ByType    map[string]int64
	// ErrorCount is the number of records that failed; Errors lists the first of them.
	ErrorCount int64
	Errors     []RecordError
	// Elapsed is the time since New.
	Elapsed time.Duration
}

// Rate is resources written per second.
func (s Summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Resources) / s.Elapsed.Seconds()
}

// Types lists the resource types imported, in alphabetical order.
func (s Summary) Types() []string {
	ts := make([]string, 0, len(s.ByType))
	for t := range s.ByType {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

// Summary returns the totals so far.
func (im *Importer) Summary() Summary {
	im.mu.Lock()
	defer im.mu.Unlock()
	s := Summary{
		Files:      im.files,
		Bundles:    im.bundles,
		Resources:  im.resources.Load(),
		ByType:     make(map[string]int64, len(im.byType)),
		ErrorCount: im.failures.Load(),
		Errors:     slices.Clone(im.errs),
		Elapsed:    im.opts.Now().Sub(im.start),
	}
	for k, v := range im.byType {
		s.ByType[k] = v
	}
	return s
}

func (im *Importer) fail(e RecordError) {
	im.failures.Add(1)
	if status, _ := fhir.OutcomeFromError(e.Err); status >= http.StatusInternalServerError {
		im.opts.Log.Error("import record failed", "file", e.File, "line", e.Line, "entry", e.Entry, "error", e.Err)
	}
	im.mu.Lock()
	if len(im.errs) < im.opts.MaxErrors {
		im.errs = append(im.errs, e)
	}
	im.mu.Unlock()
}

func (im *Importer) done(typ string, n int64) {
	im.resources.Add(n)
	im.mu.Lock()
	im.byType[typ] += n
	im.mu.Unlock()
}
