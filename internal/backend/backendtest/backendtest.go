// Package backendtest is the conformance suite every backend.Backend implementation passes: version
// history, deletes, conditional writes, transactions, concurrency and the error contract.
package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// Run runs every conformance test against fresh backends made by newBackend. skip names the
// tests of a contract the backend documents it does not offer (an upstream FHIR server has no
// create-with-id and no multi-write transactions); each is reported as skipped.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend, skip ...string) {
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	s := suite{reg: reg, newBackend: newBackend}
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend.Backend)
	}{
		{"CreateRead", s.testCreateRead},
		{"CreateReplacesClientID", s.testCreateReplacesClientID},
		{"CreateWithID", s.testCreateWithID},
		{"ReadMissing", s.testReadMissing},
		{"UpdateVersions", s.testUpdateVersions},
		{"UpdateCreates", s.testUpdateCreates},
		{"IfMatch", s.testIfMatch},
		{"DeleteGone", s.testDeleteGone},
		{"DeleteIdempotent", s.testDeleteIdempotent},
		{"RecreateAfterDelete", s.testRecreateAfterDelete},
		{"HistoryInstance", s.testHistoryInstance},
		{"HistoryPaging", s.testHistoryPaging},
		{"HistorySince", s.testHistorySince},
		{"TimesAreUTC", s.testTimesAreUTC},
		{"KeepsUnknownMeta", s.testKeepsMeta},
		{"ConditionalCreate", s.testConditionalCreate},
		{"SearchAfterWrites", s.testSearchAfterWrites},
		{"TxRollback", s.testTxRollback},
		{"TxCommit", s.testTxCommit},
		{"ConcurrentIfMatch", s.testConcurrentIfMatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if slices.Contains(skip, tt.name) {
				t.Skip("the backend does not offer this part of the contract")
			}
			tt.fn(t, newBackend(t))
		})
	}
}

type suite struct {
	reg        *search.Registry
	newBackend func(t *testing.T) backend.Backend
}

func patient(id, family string) []byte {
	m := map[string]any{
		"resourceType": "Patient",
		"name":         []any{map[string]any{"family": family, "given": []any{"Ann"}}},
		"identifier":   []any{map[string]any{"system": "urn:test:mrn", "value": "mrn-" + family}},
		"gender":       "female",
		"birthDate":    "1980-02-03",
	}
	if id != "" {
		m["id"] = id
	}
	b, _ := json.Marshal(m)
	return b
}

func field(t *testing.T, body []byte, path ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func (s suite) query(t *testing.T, typ, raw string) *search.Query {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	q, _, err := search.Parse(s.reg, []string{typ}, v, search.ParseOptions{DefaultCount: 50, MaxCount: 1000, Strict: true})
	if err != nil {
		t.Fatalf("Parse(%q): %v", raw, err)
	}
	return q
}

func (s suite) testCreateRead(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, created, err := b.Create(ctx, "Patient", patient("", "Smith"), backend.CreateOptions{})
	if err != nil || !created {
		t.Fatalf("Create = %v, %v; want created", created, err)
	}
	if !fhir.ValidID(res.ID) || res.VersionID != 1 || res.Type != "Patient" {
		t.Fatalf("Create returned %s/%s v%d", res.Type, res.ID, res.VersionID)
	}
	got, err := b.Read(ctx, "Patient", res.ID)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if got.VersionID != 1 || !got.LastUpdated.Equal(res.LastUpdated) {
		t.Errorf("Read = v%d %v, want v1 %v", got.VersionID, got.LastUpdated, res.LastUpdated)
	}
	if id := field(t, got.Body, "id"); id != res.ID {
		t.Errorf("body id = %v, want %s", id, res.ID)
	}
	if v := field(t, got.Body, "meta", "versionId"); v != "1" {
		t.Errorf("meta.versionId = %v, want \"1\"", v)
	}
	if lu, _ := field(t, got.Body, "meta", "lastUpdated").(string); lu != res.LastUpdated.UTC().Format(fhir.TimeFormat) {
		t.Errorf("meta.lastUpdated = %q, want %q", lu, res.LastUpdated.UTC().Format(fhir.TimeFormat))
	}
	if f := field(t, got.Body, "gender"); f != "female" {
		t.Errorf("gender = %v, want female (content kept)", f)
	}
}

func (s suite) testCreateReplacesClientID(t *testing.T, b backend.Backend) {
	res, _, err := b.Create(context.Background(), "Patient", patient("client-chosen", "Jones"), backend.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID == "client-chosen" {
		t.Error("Create kept the client's id; the server assigns ids on create")
	}
}

func (s suite) testCreateWithID(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, err := b.Create(ctx, "Patient", patient("", "Imported"), backend.CreateOptions{ID: "imp-1"})
	if err != nil || res.ID != "imp-1" {
		t.Fatalf("Create with ID = %v, %v", res, err)
	}
	_, _, err = b.Create(ctx, "Patient", patient("", "Imported"), backend.CreateOptions{ID: "imp-1"})
	if !errors.Is(err, fhir.ErrConflict) {
		t.Errorf("second Create with the same ID: err = %v, want ErrConflict", err)
	}
}

func (s suite) testReadMissing(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	if _, err := b.Read(ctx, "Patient", "nope"); !errors.Is(err, fhir.ErrNotFound) {
		t.Errorf("Read(missing) err = %v, want ErrNotFound", err)
	}
	if _, err := b.VRead(ctx, "Patient", "nope", 1); !errors.Is(err, fhir.ErrNotFound) {
		t.Errorf("VRead(missing) err = %v, want ErrNotFound", err)
	}
	res, _, _ := b.Create(ctx, "Patient", patient("", "A"), backend.CreateOptions{})
	if _, err := b.VRead(ctx, "Patient", res.ID, 2); !errors.Is(err, fhir.ErrNotFound) {
		t.Errorf("VRead(missing version) err = %v, want ErrNotFound", err)
	}
	if _, err := b.Read(ctx, "Observation", res.ID); !errors.Is(err, fhir.ErrNotFound) {
		t.Errorf("Read(other type, same id) err = %v, want ErrNotFound", err)
	}
}

func (s suite) testUpdateVersions(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "V1"), backend.CreateOptions{})
	up, created, err := b.Update(ctx, "Patient", res.ID, patient(res.ID, "V2"), backend.UpdateOptions{})
	if err != nil || created || up.VersionID != 2 {
		t.Fatalf("Update = v%d created=%v err=%v, want v2 not created", up.VersionID, created, err)
	}
	v1, err := b.VRead(ctx, "Patient", res.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fam := field(t, v1.Body, "name").([]any)[0].(map[string]any)["family"]; fam != "V1" {
		t.Errorf("VRead v1 family = %v, want V1", fam)
	}
	cur, _ := b.Read(ctx, "Patient", res.ID)
	if cur.VersionID != 2 {
		t.Errorf("Read after update = v%d, want v2", cur.VersionID)
	}
}

func (s suite) testUpdateCreates(t *testing.T, b backend.Backend) {
	res, created, err := b.Update(context.Background(), "Patient", "chosen-id", patient("chosen-id", "New"), backend.UpdateOptions{})
	if err != nil || !created || res.ID != "chosen-id" || res.VersionID != 1 {
		t.Fatalf("Update of unused id = %+v created=%v err=%v; want chosen-id v1 created", res, created, err)
	}
}

func (s suite) testIfMatch(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "M"), backend.CreateOptions{})
	if _, _, err := b.Update(ctx, "Patient", res.ID, patient(res.ID, "M2"), backend.UpdateOptions{IfMatch: 2}); !errors.Is(err, fhir.ErrVersionConflict) {
		t.Fatalf("Update If-Match stale: err = %v, want ErrVersionConflict", err)
	}
	cur, _ := b.Read(ctx, "Patient", res.ID)
	if cur.VersionID != 1 {
		t.Errorf("a rejected If-Match update changed the resource (v%d)", cur.VersionID)
	}
	if _, _, err := b.Update(ctx, "Patient", res.ID, patient(res.ID, "M2"), backend.UpdateOptions{IfMatch: 1}); err != nil {
		t.Errorf("Update If-Match current: %v", err)
	}
	if _, _, err := b.Update(ctx, "Patient", "never", patient("never", "X"), backend.UpdateOptions{IfMatch: 1}); !errors.Is(err, fhir.ErrVersionConflict) {
		t.Errorf("Update If-Match of a missing resource: err = %v, want ErrVersionConflict", err)
	}
}

func (s suite) testDeleteGone(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "D"), backend.CreateOptions{})
	del, err := b.Delete(ctx, "Patient", res.ID)
	if err != nil || del == nil || del.VersionID != 2 || !del.Deleted {
		t.Fatalf("Delete = %+v, %v; want version 2 deleted", del, err)
	}
	if _, err := b.Read(ctx, "Patient", res.ID); !errors.Is(err, fhir.ErrGone) {
		t.Errorf("Read after delete: err = %v, want ErrGone", err)
	}
	if _, err := b.VRead(ctx, "Patient", res.ID, 2); !errors.Is(err, fhir.ErrGone) {
		t.Errorf("VRead of the delete version: err = %v, want ErrGone", err)
	}
	if _, err := b.VRead(ctx, "Patient", res.ID, 1); err != nil {
		t.Errorf("VRead of the version before the delete: %v", err)
	}
}

func (s suite) testDeleteIdempotent(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	if res, err := b.Delete(ctx, "Patient", "never-was"); err != nil || res != nil {
		t.Errorf("Delete(missing) = %v, %v; want nil, nil", res, err)
	}
	res, _, _ := b.Create(ctx, "Patient", patient("", "D"), backend.CreateOptions{})
	_, _ = b.Delete(ctx, "Patient", res.ID)
	if again, err := b.Delete(ctx, "Patient", res.ID); err != nil || again != nil {
		t.Errorf("second Delete = %v, %v; want nil, nil", again, err)
	}
	h, err := b.History(ctx, backend.HistoryQuery{Type: "Patient", ID: res.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != 2 {
		t.Errorf("history after two deletes has %d entries, want 2", len(h.Entries))
	}
}

func (s suite) testRecreateAfterDelete(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "R"), backend.CreateOptions{})
	_, _ = b.Delete(ctx, "Patient", res.ID)
	up, created, err := b.Update(ctx, "Patient", res.ID, patient(res.ID, "R2"), backend.UpdateOptions{})
	if err != nil || !created || up.VersionID != 3 {
		t.Fatalf("Update after delete = v%d created=%v err=%v; want v3 created", up.VersionID, created, err)
	}
	if _, err := b.Read(ctx, "Patient", res.ID); err != nil {
		t.Errorf("Read after re-create: %v", err)
	}
}

func (s suite) testHistoryInstance(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "H1"), backend.CreateOptions{})
	_, _, _ = b.Update(ctx, "Patient", res.ID, patient(res.ID, "H2"), backend.UpdateOptions{})
	_, _ = b.Delete(ctx, "Patient", res.ID)
	other, _, _ := b.Create(ctx, "Patient", patient("", "Other"), backend.CreateOptions{})
	h, err := b.History(ctx, backend.HistoryQuery{Type: "Patient", ID: res.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range h.Entries {
		got = append(got, fmt.Sprintf("%s v%d %s", e.Resource.ID, e.Resource.VersionID, e.Method))
	}
	want := []string{res.ID + " v3 DELETE", res.ID + " v2 PUT", res.ID + " v1 POST"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("instance history = %v, want %v", got, want)
	}
	if h.Total == nil || *h.Total != 3 {
		t.Errorf("instance history total = %v, want 3", h.Total)
	}
	th, err := b.History(ctx, backend.HistoryQuery{Type: "Patient"})
	if err != nil {
		t.Fatal(err)
	}
	if len(th.Entries) != 4 || th.Entries[0].Resource.ID != other.ID {
		t.Errorf("type history has %d entries (first %s), want 4 with the newest first", len(th.Entries), th.Entries[0].Resource.ID)
	}
	_, _, _ = b.Create(ctx, "Observation", []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`), backend.CreateOptions{})
	sh, _ := b.History(ctx, backend.HistoryQuery{})
	if len(sh.Entries) != 5 || sh.Entries[0].Resource.Type != "Observation" {
		t.Errorf("system history has %d entries, want 5 with the Observation first", len(sh.Entries))
	}
}

func (s suite) testHistoryPaging(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "P0"), backend.CreateOptions{})
	for i := 1; i < 7; i++ {
		if _, _, err := b.Update(ctx, "Patient", res.ID, patient(res.ID, fmt.Sprintf("P%d", i)), backend.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var versions []int64
	cursor := ""
	for page := 0; page < 10; page++ {
		h, err := b.History(ctx, backend.HistoryQuery{Type: "Patient", ID: res.ID, Count: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h.Entries {
			versions = append(versions, e.Resource.VersionID)
		}
		if h.Next == "" {
			break
		}
		cursor = h.Next
	}
	if fmt.Sprint(versions) != "[7 6 5 4 3 2 1]" {
		t.Errorf("paged history versions = %v, want [7 6 5 4 3 2 1]", versions)
	}
}

func (s suite) testHistorySince(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "S"), backend.CreateOptions{})
	h, _ := b.History(ctx, backend.HistoryQuery{Type: "Patient", ID: res.ID, Since: res.LastUpdated.Add(time.Hour)})
	if len(h.Entries) != 0 {
		t.Errorf("_since after the last update returned %d entries", len(h.Entries))
	}
	h, _ = b.History(ctx, backend.HistoryQuery{Type: "Patient", ID: res.ID, Since: res.LastUpdated})
	if len(h.Entries) != 1 {
		t.Errorf("_since at the update returned %d entries, want 1", len(h.Entries))
	}
}

func (s suite) testTimesAreUTC(t *testing.T, b backend.Backend) {
	res, _, _ := b.Create(context.Background(), "Patient", patient("", "T"), backend.CreateOptions{})
	got, _ := b.Read(context.Background(), "Patient", res.ID)
	if got.LastUpdated.Location() != time.UTC {
		t.Errorf("LastUpdated location = %v, want UTC", got.LastUpdated.Location())
	}
	if d := time.Since(got.LastUpdated); d < -time.Minute || d > time.Minute {
		t.Errorf("LastUpdated = %v, not now", got.LastUpdated)
	}
}

func (s suite) testKeepsMeta(t *testing.T, b backend.Backend) {
	body := []byte(`{"resourceType":"Patient","meta":{"versionId":"99","security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]},"gender":"male"}`)
	res, _, err := b.Create(context.Background(), "Patient", body, backend.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v := field(t, res.Body, "meta", "versionId"); v != "1" {
		t.Errorf("meta.versionId = %v: the server sets it", v)
	}
	sec, _ := field(t, res.Body, "meta", "security").([]any)
	if len(sec) != 1 {
		t.Errorf("meta.security lost: %s", res.Body)
	}
}

func (s suite) testConditionalCreate(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	q := s.query(t, "Patient", "identifier=urn:test:mrn|mrn-Cond")
	first, created, err := b.Create(ctx, "Patient", patient("", "Cond"), backend.CreateOptions{IfNoneExist: q})
	if err != nil || !created {
		t.Fatalf("first conditional create = %v, %v", created, err)
	}
	again, created, err := b.Create(ctx, "Patient", patient("", "Cond"), backend.CreateOptions{IfNoneExist: q})
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("second conditional create = %v created=%v err=%v; want the existing %s", again, created, err, first.ID)
	}
	_, _, _ = b.Create(ctx, "Patient", patient("", "Cond"), backend.CreateOptions{})
	if _, _, err := b.Create(ctx, "Patient", patient("", "Cond"), backend.CreateOptions{IfNoneExist: q}); !errors.Is(err, fhir.ErrMultipleMatches) {
		t.Errorf("conditional create with two matches: err = %v, want ErrMultipleMatches", err)
	}
}

func (s suite) testSearchAfterWrites(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "Findme"), backend.CreateOptions{})
	count := func(raw string) int {
		r, err := b.Search(ctx, s.query(t, "Patient", raw))
		if err != nil {
			t.Fatalf("Search(%q): %v", raw, err)
		}
		return len(r.Matches)
	}
	if n := count("family=findme"); n != 1 {
		t.Errorf("search after create found %d, want 1", n)
	}
	_, _, _ = b.Update(ctx, "Patient", res.ID, patient(res.ID, "Renamed"), backend.UpdateOptions{})
	if n := count("family=findme"); n != 0 {
		t.Errorf("search for the old name after update found %d, want 0 (index replaced)", n)
	}
	if n := count("family=renamed"); n != 1 {
		t.Errorf("search for the new name found %d, want 1", n)
	}
	_, _ = b.Delete(ctx, "Patient", res.ID)
	if n := count("family=renamed"); n != 0 {
		t.Errorf("search after delete found %d, want 0", n)
	}
}

func (s suite) testTxRollback(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	var id string
	boom := errors.New("boom")
	err := b.InTx(ctx, func(tx backend.Backend) error {
		res, _, err := tx.Create(ctx, "Patient", patient("", "Tx"), backend.CreateOptions{})
		if err != nil {
			return err
		}
		id = res.ID
		if _, err := tx.Read(ctx, "Patient", id); err != nil {
			t.Errorf("read inside the transaction: %v", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx err = %v, want boom", err)
	}
	if _, err := b.Read(ctx, "Patient", id); !errors.Is(err, fhir.ErrNotFound) {
		t.Errorf("Read after rollback: err = %v, want ErrNotFound", err)
	}
	if h, _ := b.History(ctx, backend.HistoryQuery{}); len(h.Entries) != 0 {
		t.Errorf("history after rollback has %d entries", len(h.Entries))
	}
}

func (s suite) testTxCommit(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	var ids []string
	err := b.InTx(ctx, func(tx backend.Backend) error {
		for i := range 3 {
			res, _, err := tx.Create(ctx, "Patient", patient("", fmt.Sprint("C", i)), backend.CreateOptions{})
			if err != nil {
				return err
			}
			ids = append(ids, res.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := b.Read(ctx, "Patient", id); err != nil {
			t.Errorf("Read %s after commit: %v", id, err)
		}
	}
}

// Concurrent versioned updates of one resource: exactly one per version wins.
func (s suite) testConcurrentIfMatch(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	res, _, _ := b.Create(ctx, "Patient", patient("", "Race"), backend.CreateOptions{})
	const writers = 8
	var wg sync.WaitGroup
	results := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := b.Update(ctx, "Patient", res.ID, patient(res.ID, fmt.Sprint("W", i)), backend.UpdateOptions{IfMatch: 1})
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	wins := 0
	for err := range results {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, fhir.ErrVersionConflict):
		default:
			t.Errorf("concurrent update: unexpected error %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d concurrent If-Match updates succeeded, want exactly 1", wins)
	}
	cur, _ := b.Read(ctx, "Patient", res.ID)
	if cur.VersionID != 2 {
		t.Errorf("version after the race = %d, want 2", cur.VersionID)
	}
}
