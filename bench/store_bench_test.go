// Package bench measures fhirgate on stores of realistic size. Run with `make bench`; the store size
// comes from BENCH_RESOURCES (default 100000) and the store is kept in BENCH_DIR between runs
// (default a directory under the system temp dir), because building a million-resource store takes
// minutes.
package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// resourcesPerPatient shapes the data set: one Patient, 70 Observations (half laboratory, half
// vital signs), 19 Conditions and 10 Encounters per patient.
const (
	obsPerPatient  = 70
	condPerPatient = 19
	encPerPatient  = 10
	perPatient     = 1 + obsPerPatient + condPerPatient + encPerPatient
)

var (
	storeOnce sync.Once
	store     *sqlstore.Store
	registry  *search.Registry
	patients  int
	storeErr  error
)

func benchSize() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_RESOURCES")); err == nil && n > 0 {
		return n
	}
	return 100_000
}

// openBenchStore opens (building it the first time) a store of about BENCH_RESOURCES resources.
func openBenchStore(b *testing.B) (*sqlstore.Store, int) {
	b.Helper()
	storeOnce.Do(func() {
		registry, storeErr = search.DefaultRegistry()
		if storeErr != nil {
			return
		}
		size := benchSize()
		patients = max(size/perPatient, 1)
		var (
			opts     sqlstore.Options
			done     bool
			markDone func() error
		)
		opts, done, markDone, storeErr = benchStoreOptions(fmt.Sprintf("store-%d", patients*perPatient), registry)
		if storeErr != nil {
			return
		}
		store, storeErr = sqlstore.Open(context.Background(), opts)
		if storeErr != nil || done {
			return
		}
		start := time.Now()
		if storeErr = populate(store, patients); storeErr != nil {
			return
		}
		fmt.Fprintf(os.Stderr, "bench: built a %s store of %d resources in %s\n", benchDriver(), patients*perPatient, time.Since(start).Round(time.Second))
		storeErr = markDone()
	})
	if storeErr != nil {
		b.Fatal(storeErr)
	}
	return store, patients
}

func patientID(i int) string { return fmt.Sprintf("pt-%07d", i) }

// populate writes the data set in transactions of one patient's record each, by
// BENCH_LOAD_WORKERS writers (default 1 on SQLite, whose writes queue on one connection anyway,
// and 4 on PostgreSQL). An interrupted load resumes: a record is written with Update, so writing
// it again only adds versions.
func populate(s *sqlstore.Store, n int) error {
	ctx := context.Background()
	workers := 1
	if benchDriver() == "postgres" {
		workers = 4
	}
	if w, err := strconv.Atoi(os.Getenv("BENCH_LOAD_WORKERS")); err == nil && w > 0 {
		workers = w
	}
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				err := s.InTx(ctx, func(tx backend.Backend) error {
					for _, r := range patientRecord(i) {
						if _, _, err := tx.Update(ctx, r.typ, r.id, r.body, backend.UpdateOptions{}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	start := time.Now()
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
		if i > 0 && i%1000 == 0 {
			fmt.Fprintf(os.Stderr, "bench: %d of %d patients loaded (%s)\n", i, n, time.Since(start).Round(time.Second))
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

type resource struct {
	typ, id string
	body    []byte
}

var labCodes = []string{"4548-4", "2345-7", "2093-3", "2160-0", "718-7", "6690-2", "777-3", "2951-2"}
var vitalCodes = []string{"8867-4", "8480-6", "8462-4", "29463-7", "8302-2", "8310-5", "9279-1"}

func patientRecord(i int) []resource {
	pid := patientID(i)
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	out := []resource{{"Patient", pid, fmt.Appendf(nil,
		`{"resourceType":"Patient","id":%q,"identifier":[{"system":"urn:bench:mrn","value":"MRN%07d"}],"name":[{"family":"Family%d","given":["Given%d"]}],"gender":%q,"birthDate":"19%02d-%02d-%02d","address":[{"city":"City%d","state":"MA","postalCode":"0%04d"}]}`,
		pid, i, i%5000, i%300, []string{"female", "male"}[i%2], 30+rng.IntN(60), 1+rng.IntN(12), 1+rng.IntN(28), i%200, i%10000)}}
	for e := range encPerPatient {
		out = append(out, resource{"Encounter", fmt.Sprintf("%s-enc-%d", pid, e), fmt.Appendf(nil,
			`{"resourceType":"Encounter","id":"%s-enc-%d","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/%s"},"period":{"start":"20%02d-%02d-%02dT09:00:00Z","end":"20%02d-%02d-%02dT10:00:00Z"}}`,
			pid, e, pid, 10+e, 1+e, 10, 10+e, 1+e, 10)})
	}
	for o := range obsPerPatient {
		cat, code, unit, value := "laboratory", labCodes[o%len(labCodes)], "mg/dL", 50+rng.Float64()*100
		if o%2 == 1 {
			cat, code, unit, value = "vital-signs", vitalCodes[o%len(vitalCodes)], "/min", 40+rng.Float64()*80
		}
		out = append(out, resource{"Observation", fmt.Sprintf("%s-obs-%d", pid, o), fmt.Appendf(nil,
			`{"resourceType":"Observation","id":"%s-obs-%d","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":%q}]}],"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/%s"},"encounter":{"reference":"Encounter/%s-enc-%d"},"effectiveDateTime":"20%02d-%02d-%02dT%02d:00:00Z","valueQuantity":{"value":%.1f,"unit":%q,"system":"http://unitsofmeasure.org","code":%q}}`,
			pid, o, cat, code, pid, pid, o%encPerPatient, 10+o%15, 1+o%12, 1+o%28, o%24, value, unit, unit)})
	}
	for c := range condPerPatient {
		out = append(out, resource{"Condition", fmt.Sprintf("%s-cond-%d", pid, c), fmt.Appendf(nil,
			`{"resourceType":"Condition","id":"%s-cond-%d","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],"code":{"coding":[{"system":"http://snomed.info/sct","code":"%d"}]},"subject":{"reference":"Patient/%s"},"onsetDateTime":"20%02d-01-01"}`,
			pid, c, 44054006+c, pid, 10+c%15)})
	}
	return out
}

// latencies records per-operation durations and reports p50 and p99.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	b.ReportMetric(float64(l.d[len(l.d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l.d[len(l.d)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkRead(b *testing.B) {
	s, n := openBenchStore(b)
	ctx := context.Background()
	var lat latencies
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			id := fmt.Sprintf("%s-obs-%d", patientID(rng.IntN(n)), rng.IntN(obsPerPatient))
			start := time.Now()
			if _, err := s.Read(ctx, "Observation", id); err != nil {
				b.Error(err)
				return
			}
			lat.add(time.Since(start))
		}
	})
	b.StopTimer()
	lat.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
}

func BenchmarkCreate(b *testing.B) {
	s, n := openBenchStore(b)
	ctx := context.Background()
	var lat latencies
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
		for pb.Next() {
			body := fmt.Appendf(nil, `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2024-05-01T10:00:00Z","valueQuantity":{"value":%d,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`,
				patientID(rng.IntN(n)), 50+rng.IntN(50))
			start := time.Now()
			if _, _, err := s.Create(ctx, "Observation", body, backend.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
			lat.add(time.Since(start))
		}
	})
	b.StopTimer()
	lat.report(b)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// searchBench runs one search shape per patient picked at random.
func searchBench(b *testing.B, typ string, query func(pid string) string) {
	s, n := openBenchStore(b)
	ctx := context.Background()
	var lat latencies
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 3))
		for pb.Next() {
			v, _ := url.ParseQuery(query(patientID(rng.IntN(n))))
			start := time.Now()
			q, _, err := search.Parse(registry, []string{typ}, v, search.ParseOptions{DefaultCount: 50, MaxCount: 1000})
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := s.Search(ctx, q); err != nil {
				b.Error(err)
				return
			}
			lat.add(time.Since(start))
		}
	})
	b.StopTimer()
	lat.report(b)
}

func BenchmarkSearchObservationLabs(b *testing.B) {
	searchBench(b, "Observation", func(pid string) string { return "patient=" + pid + "&category=laboratory" })
}

func BenchmarkSearchConditions(b *testing.B) {
	searchBench(b, "Condition", func(pid string) string { return "patient=" + pid })
}

func BenchmarkSearchRevinclude(b *testing.B) {
	searchBench(b, "Encounter", func(pid string) string {
		return "patient=" + pid + "&_revinclude=Observation:encounter&_count=5"
	})
}

func BenchmarkSearchChained(b *testing.B) {
	searchBench(b, "Observation", func(pid string) string {
		return "subject:Patient.identifier=urn:bench:mrn|MRN" + pid[3:] + "&code=http://loinc.org|4548-4"
	})
}

// BenchmarkDeepPaging walks to page 40 of all vital signs, 10 per page, then times the next page.
func BenchmarkDeepPaging(b *testing.B) {
	s, _ := openBenchStore(b)
	ctx := context.Background()
	v, _ := url.ParseQuery("category=vital-signs&_count=10")
	q, _, err := search.Parse(registry, []string{"Observation"}, v, search.ParseOptions{DefaultCount: 10, MaxCount: 1000})
	if err != nil {
		b.Fatal(err)
	}
	for range 40 {
		r, err := s.Search(ctx, q)
		if err != nil || r.Next == "" {
			b.Fatalf("paging: %v", err)
		}
		q.Cursor = r.Next
	}
	var lat latencies
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := s.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
		lat.add(time.Since(start))
	}
	b.StopTimer()
	lat.report(b)
}
