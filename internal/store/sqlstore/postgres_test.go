package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/backend/backendtest"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// The PostgreSQL runs of the suites, and what only several instances sharing one database can
// show. They skip unless FHIRGATE_TEST_POSTGRES is set (pgtest_test.go).

func TestPostgresConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return sqlstore.OpenPostgresTest(t, sqlstore.Options{}) })
}

// openInstances opens n stores on one new schema, as n fhirgate instances on one database.
func openInstances(t *testing.T, n int) []*sqlstore.Store {
	t.Helper()
	dsn := sqlstore.PostgresTestDSN(t)
	out := make([]*sqlstore.Store, n)
	for i := range out {
		s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "postgres", DSN: dsn, MaxOpenConns: 4})
		if err != nil {
			t.Fatalf("Open instance %d: %v", i, err)
		}
		t.Cleanup(func() { s.Close() })
		out[i] = s
	}
	return out
}

// Instances starting at once migrate the database once; later ones find it up to date.
func TestPostgresConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	dsn := sqlstore.PostgresTestDSN(t)
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*sqlstore.Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = sqlstore.Open(ctx, sqlstore.Options{Driver: "postgres", DSN: dsn, MaxOpenConns: 1})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	s := stores[0]
	migs, err := s.Migrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for _, m := range migs {
		if m.AppliedAt.IsZero() {
			t.Errorf("migration %d (%s) is not applied", m.Version, m.Name)
		}
		last = m.Version
	}
	if v, err := s.SchemaVersion(ctx); err != nil || v != last || v == 0 {
		t.Errorf("SchemaVersion = %d, %v; want %d", v, err, last)
	}
	var rows, distinct int
	if err := s.DB().QueryRowContext(ctx, `SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != len(migs) || distinct != len(migs) {
		t.Errorf("goose_db_version holds %d rows of %d versions, want each of the %d migrations once", rows, distinct, len(migs))
	}
	if s.Driver() != "postgres" {
		t.Errorf("Driver() = %q", s.Driver())
	}
}

func TestPostgresReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	dsn := sqlstore.PostgresTestDSN(t)
	s, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "postgres", DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := s.Create(ctx, "Patient", []byte(`{"resourceType":"Patient","name":[{"family":"Ærøskøbing 🏥"}]}`), backend.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = sqlstore.Open(ctx, sqlstore.Options{Driver: "postgres", DSN: dsn})
	if err != nil {
		t.Fatalf("reopen (migrations must be idempotent): %v", err)
	}
	defer s.Close()
	got, err := s.Read(ctx, "Patient", res.ID)
	if err != nil || string(got.Body) != string(res.Body) || !got.LastUpdated.Equal(res.LastUpdated) {
		t.Errorf("Read after reopen = %v, %v; want %s", got, err, res.Body)
	}
}

func TestPostgresOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, dsn := range []string{"", "postgres://user:hunter2@127.0.0.1:1/none?sslmode=disable&connect_timeout=2", "::not a dsn"} {
		_, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "postgres", DSN: dsn})
		if err == nil {
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "hunter2") {
			t.Errorf("Open error shows the password: %s", msg)
		}
	}
}

// Two instances creating the same id: one creates, the others get ErrConflict; updating without
// If-Match: every update lands, as its own version.
func TestPostgresConcurrentWritesAcrossInstances(t *testing.T) {
	ctx := context.Background()
	stores := openInstances(t, 2)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = stores[i%2].Create(ctx, "Patient", []byte(`{"resourceType":"Patient"}`), backend.CreateOptions{ID: "same"})
		}()
	}
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, fhir.ErrConflict):
			t.Errorf("concurrent Create: unexpected error %v", err)
		}
	}
	if created != 1 {
		t.Errorf("%d concurrent Creates of one id succeeded, want 1", created)
	}
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, errs[i] = stores[i%2].Update(ctx, "Patient", "same", []byte(fmt.Sprintf(`{"resourceType":"Patient","id":"same","gender":"w%d"}`, i)), backend.UpdateOptions{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("concurrent Update: %v", err)
		}
	}
	cur, err := stores[0].Read(ctx, "Patient", "same")
	if err != nil || cur.VersionID != writers+1 {
		t.Fatalf("after %d updates: %v, %v; want version %d", writers, cur, err, writers+1)
	}
	h, err := stores[1].History(ctx, backend.HistoryQuery{Type: "Patient", ID: "same", Count: 100})
	if err != nil || len(h.Entries) != writers+1 {
		t.Fatalf("history: %v entries, %v; want %d", len(h.Entries), err, writers+1)
	}
	for i, e := range h.Entries {
		if want := int64(writers + 1 - i); e.Resource.VersionID != want {
			t.Errorf("history entry %d is version %d, want %d", i, e.Resource.VersionID, want)
		}
	}
}

// Instances appending to the audit chain at once never fork it: the sequence has no gaps and
// each entry links to the one before.
func TestPostgresAuditChainAcrossInstances(t *testing.T) {
	ctx := context.Background()
	stores := openInstances(t, 3)
	link := func(prev []byte, id string) []byte {
		h := sha256.Sum256(append(append([]byte{}, prev...), id...))
		return h[:]
	}
	const appenders, batches = 6, 5
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				_, err := stores[a%len(stores)].AppendAudit(ctx, func(head sqlstore.AuditHead) ([]sqlstore.AuditEntry, error) {
					prev := head.Hash
					if prev == nil {
						prev = make([]byte, 32)
					}
					var es []sqlstore.AuditEntry
					for k := range 2 {
						id := fmt.Sprintf("a%d-b%d-%d", a, b, k)
						h := link(prev, id)
						es = append(es, sqlstore.AuditEntry{Seq: head.Seq + int64(k) + 1, ID: id, Recorded: time.Now(), Action: "read", Outcome: "success",
							ClientID: fmt.Sprint("client-", a), Patients: []string{"p1"}, PrevHash: prev, Hash: h, Event: []byte(`{}`)})
						prev = h
					}
					return es, nil
				})
				if err != nil {
					t.Errorf("AppendAudit: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var (
		n    int64
		prev = make([]byte, 32)
	)
	err := stores[0].ScanAudit(ctx, 0, func(e sqlstore.AuditEntry) error {
		n++
		if e.Seq != n {
			return fmt.Errorf("entry %d has seq %d", n, e.Seq)
		}
		if string(e.PrevHash) != string(prev) || string(e.Hash) != string(link(prev, e.ID)) {
			return fmt.Errorf("entry %d (%s) does not link to the entry before it", e.Seq, e.ID)
		}
		prev = e.Hash
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(appenders * batches * 2); n != want {
		t.Errorf("chain holds %d entries, want %d", n, want)
	}
	list, err := stores[1].ListAuditEntries(ctx, sqlstore.AuditFilter{Patient: "p1", Agent: "client-0", Limit: 1000})
	if err != nil || len(list) != batches*2 {
		t.Errorf("ListAuditEntries(patient, agent) = %d entries, %v; want %d", len(list), err, batches*2)
	}
}

// A code is redeemed once even when instances race for it.
func TestPostgresOAuthSingleUseAcrossInstances(t *testing.T) {
	ctx := context.Background()
	stores := openInstances(t, 2)
	rec := sqlstore.OAuthRequest{Kind: sqlstore.KindCode, Signature: "sig", RequestID: "req", ClientID: "c", ExpiresAt: time.Now().Add(time.Minute), Data: []byte(`{}`)}
	if err := stores[0].CreateOAuthRequest(ctx, rec); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// As the token endpoint does: inside an OAuth transaction.
			s := stores[i%2]
			tctx, err := s.BeginOAuthTx(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			if errs[i] = s.DeactivateOAuthRequest(tctx, sqlstore.KindCode, "sig"); errs[i] != nil {
				_ = s.RollbackOAuthTx(tctx)
				return
			}
			errs[i] = s.CommitOAuthTx(tctx)
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, sqlstore.ErrOAuthInactive):
			t.Errorf("racing redemption: %v, want ErrOAuthInactive", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d redemptions succeeded, want 1", wins)
	}
	l := sqlstore.OAuthLaunch{IDHash: "h", ClientID: "app", Patient: "p", ExpiresAt: time.Now().Add(time.Minute)}
	if err := stores[0].CreateOAuthLaunch(ctx, l); err != nil {
		t.Fatal(err)
	}
	wins = 0
	var mu sync.Mutex
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := stores[i%2].ConsumeOAuthLaunch(ctx, "h", "app", time.Now())
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, sqlstore.ErrOAuthNotFound):
				t.Errorf("racing launch consumption: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d launch consumptions succeeded, want 1", wins)
	}
}

// BenchmarkStoreWrites writes Observations through the Backend on each driver: one per
// transaction (single creates) and 100 per transaction (an import chunk), and reads them back.
func BenchmarkStoreWrites(b *testing.B) {
	const obs = `{"resourceType":"Observation","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"29463-7","display":"Body weight"}]},
		"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2021-06-01",
		"valueQuantity":{"value":70.5,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}`
	for _, driver := range sqlstore.DriversUnderTest() {
		for _, perTx := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/%d per tx", driver, perTx), func(b *testing.B) {
				s := sqlstore.OpenTestStore(b, driver, sqlstore.Options{})
				ctx := context.Background()
				n := 0
				for b.Loop() {
					err := s.InTx(ctx, func(tx backend.Backend) error {
						for range perTx {
							n++
							if _, _, err := tx.Create(ctx, "Observation", []byte(fmt.Sprintf(obs, n%50)), backend.CreateOptions{}); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
			})
		}
		b.Run(driver+"/1 per tx, 16 writers", func(b *testing.B) {
			s := sqlstore.OpenTestStore(b, driver, sqlstore.Options{})
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(8) // 16 writers on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					if _, _, err := s.Create(ctx, "Observation", []byte(fmt.Sprintf(obs, i%50)), backend.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "resources/s")
		})
		b.Run(driver+"/search by patient", func(b *testing.B) {
			s := sqlstore.OpenTestStore(b, driver, sqlstore.Options{})
			ctx := context.Background()
			err := s.InTx(ctx, func(tx backend.Backend) error {
				for i := range 2000 {
					if _, _, err := tx.Create(ctx, "Observation", []byte(fmt.Sprintf(obs, i%50)), backend.CreateOptions{}); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			reg, err := search.DefaultRegistry()
			if err != nil {
				b.Fatal(err)
			}
			q, _, err := search.Parse(reg, []string{"Observation"}, url.Values{"subject": {"Patient/p7"}, "code": {"http://loinc.org|29463-7"}}, search.ParseOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				res, err := s.Search(ctx, q)
				if err != nil || len(res.Matches) != 40 {
					b.Fatalf("search: %d matches, %v", len(res.Matches), err)
				}
			}
		})
	}
}
