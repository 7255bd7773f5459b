package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// The cost of the audit trail on a read-heavy load: the same fhirapi over the same store with the
// real token verifier and policy engine, without a trail (off) and with one (batch durability with
// the default 10ms flush interval and with 100ms, and sync durability), serving 90% reads of an Observation and 10% searches of a patient's laboratory
// results from `clients` concurrent callers. The three arms run interleaved in rounds within one
// run, so they see the same cache and machine state; each reports requests per second and its
// time relative to off. The trail is in its own SQLite file (the read-only load leaves the store's
// write connection to the trail either way, and the cached bench store stays unpolluted).

const auditBenchBase = "http://bench.test/fhir"

type auditNoValidation struct{}

func (auditNoValidation) Validate(string, []byte) error { return nil }

type auditBenchKeys struct{ key *ecdsa.PrivateKey }

func (k auditBenchKeys) PublicKeys(context.Context) (jose.JSONWebKeySet, error) {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.key.PublicKey, KeyID: "audit-bench", Algorithm: "ES256", Use: "sig"}}}, nil
}

var auditBenchLog = slog.New(slog.NewTextHandler(io.Discard, nil))

type auditArm struct {
	name    string
	h       http.Handler
	trail   *audit.Trail
	elapsed time.Duration
	reqs    int64
}

func newAuditArms(b *testing.B) ([]*auditArm, string, int) {
	b.Helper()
	s, n := openBenchStore(b)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	issuer := strings.TrimSuffix(auditBenchBase, "/fhir")
	verifier, err := authn.NewVerifier(authn.Config{Issuer: issuer, Audience: auditBenchBase, Keys: auditBenchKeys{key}, Revoker: s})
	if err != nil {
		b.Fatal(err)
	}
	matcher, err := search.NewMatcher(registry)
	if err != nil {
		b.Fatal(err)
	}
	membership, err := compartment.NewMembership(registry, nil)
	if err != nil {
		b.Fatal(err)
	}
	engine, err := policy.New(policy.Config{Registry: registry, Matcher: matcher, Membership: membership, BaseURL: auditBenchBase})
	if err != nil {
		b.Fatal(err)
	}
	newAPI := func(rec audit.Recorder, log fhirapi.AuditLog) http.Handler {
		opts := fhirapi.Options{Backend: s, Registry: registry, Validator: auditNoValidation{}, Authenticator: verifier, Policy: engine,
			BaseURL: auditBenchBase, DefaultCount: 50, MaxCount: 1000, Logger: auditBenchLog}
		if rec != nil {
			opts.Audit, opts.AuditLog = rec, log
		}
		h, err := fhirapi.New(opts)
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	arms := []*auditArm{{name: "off", h: newAPI(nil, nil)}}
	for _, v := range []struct {
		name  string
		d     audit.Durability
		flush time.Duration
	}{{"batch", audit.DurabilityBatch, 0}, {"batch100ms", audit.DurabilityBatch, 100 * time.Millisecond}, {"sync", audit.DurabilitySync, 0}} {
		ts, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(b.TempDir(), "audit.db"), Logger: auditBenchLog})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ts.Close() })
		tr, err := audit.Open(context.Background(), audit.Options{Store: ts, Durability: v.d, FlushInterval: v.flush, MaxBatch: 4096, Logger: auditBenchLog,
			Source: audit.Source{Observer: issuer}, Detectors: []audit.Detector{audit.NewDeniedBurst(time.Minute, 20), audit.NewPatientSpread(time.Hour, 50)}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close(context.Background()) })
		arms = append(arms, &auditArm{name: v.name, h: newAPI(tr, ts), trail: tr})
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "audit-bench"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": issuer, "aud": auditBenchBase, "sub": "bench-service", "client_id": "bench-service", "scope": "system/*.rs",
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(), "jti": rand.Text(),
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	return arms, tok, n
}

// auditLoadPath is request i of the read-heavy mix.
func auditLoadPath(r *mrand.Rand, patients int) string {
	pid := patientID(r.IntN(patients))
	if r.IntN(10) == 0 {
		return "/fhir/Observation?patient=" + pid + "&category=laboratory&_count=50"
	}
	return fmt.Sprintf("/fhir/Observation/%s-obs-%d", pid, r.IntN(obsPerPatient))
}

// runAuditArm serves n requests of the mix from clients goroutines and returns the wall time.
func runAuditArm(b *testing.B, a *auditArm, tok string, patients, clients, n int, seed uint64) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(seed, uint64(c)))
			for next.Add(1) <= int64(n) {
				req := httptest.NewRequest(http.MethodGet, auditLoadPath(r, patients), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				rec := httptest.NewRecorder()
				a.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Errorf("%s: GET %s = %d %.300s", a.name, req.URL, rec.Code, rec.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkAuditOverhead reports, per client count, requests/s of each arm and sync/off and
// batch/off (time for the same requests; 1.00 is free). One op is a round of 100 requests per arm;
// use -benchtime=Nx for N rounds.
func BenchmarkAuditOverhead(b *testing.B) {
	arms, tok, patients := newAuditArms(b)
	for _, clients := range []int{1, 8} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			for _, a := range arms {
				a.elapsed, a.reqs = 0, 0
				runAuditArm(b, a, tok, patients, clients, 200, 1) // warm-up
			}
			// One op is a round: `round` requests per arm, the arms in a rotating order.
			const round = 100
			b.ResetTimer()
			for r := uint64(0); b.Loop(); r++ {
				for i := range arms {
					a := arms[(int(r)+i)%len(arms)]
					a.elapsed += runAuditArm(b, a, tok, patients, clients, round, r+2)
					a.reqs += round
				}
			}
			b.StopTimer()
			off := arms[0]
			for _, a := range arms {
				b.ReportMetric(float64(a.reqs)/a.elapsed.Seconds(), a.name+"-req/s")
				if a != off {
					b.ReportMetric(float64(a.elapsed)/float64(off.elapsed), a.name+"/off")
				}
			}
		})
	}
	for _, a := range arms[1:] {
		st := a.trail.Stats()
		b.Logf("%s trail: %d events in %d commits (%.1f per commit)", a.name, st.Appended, st.Flushes, float64(st.Appended)/float64(max(st.Flushes, 1)))
	}
}

// auditVerifyEvents is the chain length of BenchmarkAuditVerify (BENCH_AUDIT_EVENTS, default one
// million).
func auditVerifyEvents() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_AUDIT_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// openAuditChain opens (building it the first time, kept in BENCH_DIR) a chain of n events with a
// signed checkpoint every 10 000, and the JWKS of its signing key.
func openAuditChain(b *testing.B, n int) (*sqlstore.Store, jose.JSONWebKeySet) {
	b.Helper()
	dir := os.Getenv("BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "fhirgate-bench")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("audit-%d.db", n))
	keyPath := path + ".key"
	_, statErr := os.Stat(path + ".done")
	if statErr != nil {
		for _, p := range []string{path, path + "-wal", path + "-shm", keyPath} {
			os.Remove(p)
		}
	}
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: path, Logger: auditBenchLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var key *ecdsa.PrivateKey
	if statErr == nil {
		der, err := os.ReadFile(keyPath)
		if err == nil {
			key, err = x509.ParseECPrivateKey(der)
		}
		if err != nil {
			b.Fatal(err)
		}
	} else {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			b.Fatal(err)
		}
		der, _ := x509.MarshalECPrivateKey(key)
		if err := os.WriteFile(keyPath, der, 0o600); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		tr, err := audit.Open(context.Background(), audit.Options{Store: s, Durability: audit.DurabilityBatch, MaxBatch: 4096,
			QueueSize: 65536, FlushInterval: 50 * time.Millisecond, CheckpointEntries: 10_000, CheckpointInterval: time.Hour,
			Signer: audit.NewJOSESigner(func() (audit.SigningKey, error) { return audit.SigningKey{KID: "audit-bench", Key: key}, nil }),
			Source: audit.Source{Observer: "https://bench.test"}, Logger: auditBenchLog})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		ctx := context.Background()
		for i := range n {
			pid := patientID(i % 5000)
			e := audit.Event{Time: t0.Add(time.Duration(i) * 10 * time.Millisecond), Action: audit.ActionRead, Status: 200,
				ClientID: "ehr", Subject: "user" + strconv.Itoa(i%200), FHIRUser: "Practitioner/pr" + strconv.Itoa(i%200),
				SourceIP: "10.0.0." + strconv.Itoa(i%250), UserAgent: "bench/1", ResourceType: "Observation",
				Resources: []string{fmt.Sprintf("Observation/%s-obs-%d", pid, i%obsPerPatient)}, Patients: []string{pid},
				Count: 1, RequestID: "req-" + strconv.Itoa(i), TokenID: "jti-" + strconv.Itoa(i/100)}
			if err := tr.Record(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
		if err := tr.Close(ctx); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "bench: built an audit chain of %d events in %s\n", n, time.Since(start).Round(time.Second))
		if err := os.WriteFile(path+".done", nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	return s, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "audit-bench", Algorithm: "ES256", Use: "sig"}}}
}

// BenchmarkAuditVerify is `fhirgate audit verify` over BENCH_AUDIT_EVENTS events (one million by
// default): the whole chain, both indexes and every checkpoint signature. Run with -benchtime=1x.
func BenchmarkAuditVerify(b *testing.B) {
	n := auditVerifyEvents()
	s, jwks := openAuditChain(b, n)
	v := audit.NewKeySetVerifier(jwks)
	b.ResetTimer()
	for b.Loop() {
		rep, err := audit.Verify(context.Background(), s, v)
		if err != nil {
			b.Fatal(err)
		}
		if !rep.OK() || rep.Entries != int64(n) || rep.Signed == 0 {
			b.Fatalf("verify: %d entries, %d signed checkpoints, problems %v", rep.Entries, rep.Signed, rep.Problems)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/verify")
}
