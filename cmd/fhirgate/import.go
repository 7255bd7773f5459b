package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/importer"
)

func init() {
	register(command{name: "import", summary: "load FHIR Bundles and NDJSON files (Synthea, Bulk Data) into the store", run: runImport})
}

func runImport(ctx context.Context, e env) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: fhirgate import [flags] PATH...\n\nPATH is a .json Bundle or resource, a .ndjson/.jsonl file (each optionally .gz), or a directory of them.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var cf configFlags
	cf.register(fs)
	progress := fs.Bool("progress", false, "print a progress line on stderr even when it is not a terminal")
	chunk := fs.Int("chunk-size", 500, "resources written per backend transaction")
	workers := fs.Int("workers", 0, "goroutines validating resources (0: one per CPU)")
	// The flag package stops at the first argument that is not a flag; let flags follow paths.
	var paths []string
	args := e.args
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		paths = append(paths, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(paths) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: import needs at least one PATH", errUsage)
	}
	cfg, store, log, err := cf.openStore(ctx, e, fs)
	if err != nil {
		return err
	}
	defer store.Close()
	validator, err := validate.New()
	if err != nil {
		return err
	}
	im, err := importer.New(importer.Options{
		Backend:   store,
		Validator: validator,
		Parse:     bundle.SearchParser(store.Registry(), cfg.FHIRBase(), cfg.FHIR.MaxCount),
		BaseURL:   cfg.FHIRBase(),
		ChunkSize: *chunk,
		Workers:   *workers,
		Log:       log,
	})
	if err != nil {
		return err
	}
	if tty := isTerminal(e.stderr); *progress || tty {
		stop := showProgress(e.stderr, im, tty)
		defer stop()
	}
	for _, p := range paths {
		if err = im.ImportPath(ctx, p); err != nil {
			break
		}
	}
	s := im.Summary()
	writeSummary(e.stdout, s)
	if err != nil {
		return err
	}
	if s.ErrorCount > 0 {
		return fmt.Errorf("import: %d records failed", s.ErrorCount)
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showProgress reports progress on w until stop is called: on a terminal it rewrites one line
// twice a second, elsewhere (a log file) it writes a line every five seconds.
func showProgress(w io.Writer, im *importer.Importer, tty bool) (stop func()) {
	every, start, end := 5*time.Second, "", "\n"
	if tty {
		every, start, end = 500*time.Millisecond, "\r\033[K", ""
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		began := time.Now()
		var last int64
		lastAt := began
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, start)
				}
				return
			case now := <-t.C:
				p := im.Progress()
				rate := float64(p.Resources-last) / now.Sub(lastAt).Seconds()
				last, lastAt = p.Resources, now
				fmt.Fprintf(w, "%simported %d resources (%.0f/s), %d errors, %s%s", start, p.Resources, rate, p.Errors, now.Sub(began).Truncate(time.Second), end)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func writeSummary(w io.Writer, s importer.Summary) {
	var b strings.Builder
	fmt.Fprintf(&b, "imported %d resources from %d files (%d transaction/batch Bundles) in %s: %.0f resources/s\n",
		s.Resources, s.Files, s.Bundles, s.Elapsed.Truncate(time.Millisecond), s.Rate())
	for _, t := range s.Types() {
		fmt.Fprintf(&b, "  %-28s %d\n", t, s.ByType[t])
	}
	if s.ErrorCount > 0 {
		fmt.Fprintf(&b, "%d records failed:\n", s.ErrorCount)
		for _, re := range s.Errors {
			fmt.Fprintf(&b, "  %s\n", re.Error())
		}
		if n := s.ErrorCount - int64(len(s.Errors)); n > 0 {
			fmt.Fprintf(&b, "  ... and %d more\n", n)
		}
	}
	io.WriteString(w, b.String())
}
