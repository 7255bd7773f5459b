package bench

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/importer"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// writeSynthetic writes n Synthea-like resources as NDJSON: one Patient, then nine Observations
// that refer to it, repeating. It returns the file size.
func writeSynthetic(tb testing.TB, path string, n int) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	patient := 0
	for i := range n {
		if i%10 == 0 {
			patient = i
			fmt.Fprintf(w, `{"resourceType":"Patient","id":"pat-%d","meta":{"profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},`+
				`"identifier":[{"system":"https://github.com/synthetichealth/synthea","value":"pat-%d"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"http://hospital.example.org","value":"MRN%07d"}],`+
				`"name":[{"use":"official","family":"Family%d","given":["Given%d"],"prefix":["Mr."]}],"telecom":[{"system":"phone","value":"555-%04d","use":"home"}],`+
				`"gender":"%s","birthDate":"19%02d-0%d-1%d","address":[{"line":["%d Main St"],"city":"Springfield","state":"MA","postalCode":"01%03d","country":"US"}],"maritalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus","code":"M"}]}}`+"\n",
				i, i, i, i%97, i%89, i%10000, []string{"male", "female"}[i%2], i%100, 1+i%9, i%10, i%1000, i%1000)
			continue
		}
		fmt.Fprintf(w, `{"resourceType":"Observation","id":"obs-%d","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs","display":"vital-signs"}]}],`+
			`"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body Weight"}],"text":"Body Weight"},"subject":{"reference":"Patient/pat-%d"},`+
			`"encounter":{"reference":"Encounter/enc-%d"},"effectiveDateTime":"2020-0%d-1%dT10:%02d:00Z","issued":"2020-0%d-1%dT10:%02d:00.000Z",`+
			`"valueQuantity":{"value":%d.%d,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`+"\n",
			i, patient, patient, 1+i%9, i%10, i%60, 1+i%9, i%10, i%60, 40+i%80, i%10)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

func openStore(tb testing.TB, dir string) *sqlstore.Store {
	tb.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(dir, "db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var (
	validatorOnce sync.Once
	validator     *validate.Validator
	validatorErr  error
)

func newValidator(tb testing.TB) *validate.Validator {
	tb.Helper()
	validatorOnce.Do(func() {
		validator, validatorErr = validate.New()
		if validatorErr == nil {
			validatorErr = validator.CompileAll()
		}
	})
	if validatorErr != nil {
		tb.Fatal(validatorErr)
	}
	return validator
}

// BenchmarkImportNDJSON imports 20,000 resources into a fresh SQLite store per iteration and
// reports resources/s.
func BenchmarkImportNDJSON(b *testing.B) {
	if testing.Short() {
		b.Skip("import benchmark skipped under -short")
	}
	const n = 20000
	data := filepath.Join(b.TempDir(), "data.ndjson")
	writeSynthetic(b, data, n)
	v := newValidator(b)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		s := openStore(b, dir)
		im, err := importer.New(importer.Options{Backend: s, Validator: v})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := im.ImportPath(context.Background(), data); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if sum := im.Summary(); sum.Resources != n || sum.ErrorCount != 0 {
			b.Fatalf("imported %d with %d errors: %v", sum.Resources, sum.ErrorCount, sum.Errors)
		}
		s.Close()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "resources/s")
}

// TestImportMemoryIsFlat imports 100,000 resources (about 90 MB of NDJSON) and checks that the
// heap never holds more than a fraction of the input. It samples runtime.MemStats while the
// import runs and reports the peak and the rate.
//
// It takes minutes (longer under -race), so it runs only with BENCH_IMPORT_MEMORY=1, as
// `make bench` sets it.
func TestImportMemoryIsFlat(t *testing.T) {
	if os.Getenv("BENCH_IMPORT_MEMORY") == "" {
		t.Skip("the 100k-resource memory test runs with BENCH_IMPORT_MEMORY=1 (make bench)")
	}
	const n = 100000
	dir := t.TempDir()
	data := filepath.Join(dir, "data.ndjson")
	size := writeSynthetic(t, data, n)
	s := openStore(t, dir)
	defer s.Close()
	v := newValidator(t)
	im, err := importer.New(importer.Options{Backend: s, Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	baseLive := liveHeap()

	// Peak heap in use (garbage included) and peak live heap (as the last GC found it).
	var peak, peakLive atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			if l := liveHeap(); l > peakLive.Load() {
				peakLive.Store(l)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	err = im.ImportPath(context.Background(), data)
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	sum := im.Summary()
	if sum.Resources != n || sum.ErrorCount != 0 {
		t.Fatalf("imported %d with %d errors: %v", sum.Resources, sum.ErrorCount, sum.Errors)
	}
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	p, live := peak.Load(), peakLive.Load()
	t.Logf("imported %d resources (%.1f MB NDJSON) in %s: %.0f resources/s wall, %.0f resources per CPU-second (%s CPU)",
		n, float64(size)/1e6, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(n)/cpu.Seconds(), cpu.Round(time.Millisecond))
	t.Logf("heap in use: peak %.1f MB (%.1f MB before); live heap: peak %.1f MB (%.1f MB before)",
		float64(p)/1e6, float64(base.HeapInuse)/1e6, float64(live)/1e6, float64(baseLive)/1e6)
	// The validator and the search registry are in the baseline; what the import keeps alive
	// must stay far below what the input holds.
	if live > baseLive && live-baseLive > uint64(size)/2 {
		t.Errorf("the live heap grew by %.1f MB, more than half the %.1f MB input: the import is not streaming", float64(live-baseLive)/1e6, float64(size)/1e6)
	}
}

// liveHeap is the heap the last garbage collection found alive.
func liveHeap() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return sample[0].Value.Uint64()
}
