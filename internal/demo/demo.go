package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Well-known ids that the demo logins and documentation link to.
const (
	AlicePatientID    = "example-alice"
	BobPatientID      = "example-bob"
	SmithPractitioner = "example-smith"
)

// DefaultNow is the reference date used when Options.Now is zero.
var DefaultNow = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// Options sets what Generate makes.
type Options struct {
	// Patients is the number of patients, Patient/example-alice and Patient/example-bob included
	// (they are always made, so fewer than 2 means 2).
	Patients int
	// Seed selects the data set: the same seed, patient count and day give the same bytes.
	Seed int64
	// Now is the reference date: records lie in the years before it. Only its UTC day counts,
	// so that every run on one day makes the same data. Zero means DefaultNow.
	Now time.Time
}

// Summary counts what was generated (or loaded).
type Summary struct {
	// Resources counts resources by type.
	Resources map[string]int
	// Total is the number of resources.
	Total int
	// Labeled is the number of resources that carry a security label other than normal.
	Labeled int
}

func (s *Summary) add(typ string, labeled bool) {
	if s.Resources == nil {
		s.Resources = map[string]int{}
	}
	s.Resources[typ]++
	s.Total++
	if labeled {
		s.Labeled++
	}
}

// String renders the summary as "5123 resources (Observation 3100, Patient 100, ...)".
func (s Summary) String() string {
	types := slices.Sorted(maps.Keys(s.Resources))
	out := strconv.Itoa(s.Total) + " resources ("
	for i, t := range types {
		if i > 0 {
			out += ", "
		}
		out += t + " " + strconv.Itoa(s.Resources[t])
	}
	return out + ")"
}

// EmitFunc receives one generated resource: its type, id and JSON body.
type EmitFunc func(resourceType, id string, body []byte) error

// ErrInvalidOptions is returned for options Generate cannot use.
var ErrInvalidOptions = errors.New("demo: invalid options")

// MaxPatients bounds Options.Patients (ids have six digits).
const MaxPatients = 999_999

// Generate makes the demo data set and hands each resource to emit, in an order where every
// resource comes after the ones it refers to: organizations, practitioners and their roles, then
// each patient with its record. An error from emit stops the generation and is returned.
func Generate(opts Options, emit EmitFunc) (Summary, error) {
	if opts.Patients < 2 {
		opts.Patients = 2
	}
	if opts.Patients > MaxPatients {
		return Summary{}, fmt.Errorf("%w: at most %d patients", ErrInvalidOptions, MaxPatients)
	}
	now := opts.Now
	if now.IsZero() {
		now = DefaultNow
	}
	now = now.UTC().Truncate(24 * time.Hour)
	g := &generator{now: now, seed: uint64(opts.Seed), emit: emit}
	if err := g.shared(); err != nil {
		return g.sum, err
	}
	for i := range opts.Patients {
		var err error
		switch i {
		case 0:
			err = g.patient(alice(g.rng(0)))
		case 1:
			err = g.patient(bob(g.rng(1)))
		default:
			err = g.patient(randomProfile(g.rng(uint64(i)), i))
		}
		if err != nil {
			return g.sum, err
		}
	}
	return g.sum, nil
}

// generator holds the state of one Generate call.
type generator struct {
	now  time.Time
	seed uint64
	emit EmitFunc
	sum  Summary
}

// rng is the random source of one patient, so that each patient depends only on the seed and
// its number, not on the others.
func (g *generator) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(g.seed, stream*0x9E3779B97F4A7C15+1)) // #nosec G404 -- deterministic synthetic data, not a secret
}

// put encodes and emits one resource. encoding/json writes map keys sorted, so the bytes
// depend only on the content.
func (g *generator) put(r obj) error {
	typ, _ := r["resourceType"].(string)
	id, _ := r["id"].(string)
	body, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("demo: encode %s/%s: %w", typ, id, err)
	}
	labeled := false
	if meta, ok := r["meta"].(obj); ok {
		_, labeled = meta["security"]
	}
	if err := g.emit(typ, id, body); err != nil {
		return fmt.Errorf("demo: %s/%s: %w", typ, id, err)
	}
	g.sum.add(typ, labeled)
	return nil
}

// obj is a JSON object under construction.
type obj = map[string]any

func ref(typ, id string) obj { return obj{"reference": typ + "/" + id} }

func refDisplay(typ, id, display string) obj {
	return obj{"reference": typ + "/" + id, "display": display}
}

func coding(c code) obj { return obj{"system": c.system, "code": c.code, "display": c.display} }

func concept(c code) obj { return obj{"coding": []any{coding(c)}, "text": c.display} }

func conceptOf(system, code, display string) obj {
	return obj{"coding": []any{obj{"system": system, "code": code, "display": display}}}
}

// securityMeta is a meta with the given security labels, or nil without labels.
func securityMeta(labels []string) obj {
	if len(labels) == 0 {
		return nil
	}
	var sec []any
	for _, l := range labels {
		sys := sysActCode
		if l == labelR || l == labelV {
			sys = sysConfident
		}
		sec = append(sec, obj{"system": sys, "code": l, "display": labelDisplay[l]})
	}
	return obj{"security": sec}
}

func setMeta(r obj, labels []string) obj {
	if m := securityMeta(labels); m != nil {
		r["meta"] = m
	}
	return r
}

func dateTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }
func date(t time.Time) string     { return t.UTC().Format("2006-01-02") }
func instant(t time.Time) string  { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// round keeps n decimals.
func round(x float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(x*p) / p
}

func quantity(v float64, unit, ucum string) obj {
	return obj{"value": v, "unit": unit, "system": sysUCUM, "code": ucum}
}

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }
