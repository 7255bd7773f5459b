package importer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/bundle"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhir/validate"
	"github.com/fhirgate/fhirgate/internal/importer"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

var (
	validatorOnce sync.Once
	validator     *validate.Validator
	validatorErr  error
)

func newValidator(t testing.TB) *validate.Validator {
	t.Helper()
	validatorOnce.Do(func() { validator, validatorErr = validate.New() })
	if validatorErr != nil {
		t.Fatal(validatorErr)
	}
	return validator
}

func newStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newImporter(t testing.TB, s backend.Backend, mod func(*importer.Options)) *importer.Importer {
	t.Helper()
	reg, err := search.DefaultRegistry()
	if err != nil {
		t.Fatal(err)
	}
	opts := importer.Options{
		Backend:   s,
		Validator: newValidator(t),
		Parse:     bundle.SearchParser(reg, "http://fhir.test/fhir", 0),
		BaseURL:   "http://fhir.test/fhir",
		ChunkSize: 3,
		Workers:   2,
	}
	if mod != nil {
		mod(&opts)
	}
	im, err := importer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func gz(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// errorPlaces lists where each error of the summary points, as "line:N" or "entry:N".
func errorPlaces(s importer.Summary) []string {
	var out []string
	for _, e := range s.Errors {
		switch {
		case e.Line > 0:
			out = append(out, fmt.Sprintf("line:%d", e.Line))
		case e.Entry >= 0:
			out = append(out, fmt.Sprintf("entry:%d", e.Entry))
		default:
			out = append(out, "file")
		}
	}
	return out
}

func exists(t testing.TB, b backend.Backend, typ, id string) bool {
	t.Helper()
	_, err := b.Read(context.Background(), typ, id)
	if err != nil && !errors.Is(err, fhir.ErrNotFound) {
		t.Fatalf("read %s/%s: %v", typ, id, err)
	}
	return err == nil
}

const ndjson = `{"resourceType":"Patient","id":"p1","name":[{"family":"One"}]}
{"resourceType":"Patient","id":"p2","birthDate":"1999-99-99"}

not json
{"resourceType":"Patient","id":"p3"}
{"resourceType":"NoSuchType","id":"x"}
{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"w"},"subject":{"reference":"Patient/p1"}}
{"resourceType":"Patient","id":"bad id!"}
{"resourceType":"Patient","id":"p4"} {"resourceType":"Patient","id":"p5"}
{"resourceType":"Patient","id":"p6"}`

func TestImportNDJSON(t *testing.T) {
	for _, tc := range []struct{ name, file, content string }{
		{"plain", "data.ndjson", ndjson},
		{"gzip", "data.ndjson.gz", gz(t, ndjson)},
		{"gzip without the suffix", "data.jsonl", gz(t, ndjson)},
		{"CRLF and no final newline", "data.ndjson", strings.ReplaceAll(ndjson, "\n", "\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			im := newImporter(t, s, nil)
			if err := im.ImportPath(context.Background(), writeFile(t, tc.file, tc.content)); err != nil {
				t.Fatal(err)
			}
			sum := im.Summary()
			if sum.Resources != 4 || sum.ByType["Patient"] != 3 || sum.ByType["Observation"] != 1 {
				t.Errorf("resources %d by type %v", sum.Resources, sum.ByType)
			}
			if got, want := strings.Join(errorPlaces(sum), " "), "line:2 line:4 line:6 line:8 line:9"; got != want {
				t.Errorf("errors at %s, want %s: %v", got, want, sum.Errors)
			}
			if sum.ErrorCount != 5 {
				t.Errorf("ErrorCount %d", sum.ErrorCount)
			}
			for _, id := range []string{"p1", "p3", "p6"} {
				if !exists(t, s, "Patient", id) {
					t.Errorf("Patient/%s was not imported", id)
				}
			}
			for _, id := range []string{"p2", "p4", "p5"} {
				if exists(t, s, "Patient", id) {
					t.Errorf("Patient/%s was imported from a bad line", id)
				}
			}
			if msg := sum.Errors[0].Error(); !strings.Contains(msg, tc.file+":2: ") {
				t.Errorf("error text %q does not name the file and line", msg)
			}
		})
	}
}

func TestReimportIsIdempotent(t *testing.T) {
	s := newStore(t)
	path := writeFile(t, "p.ndjson", `{"resourceType":"Patient","id":"p1","active":true}`+"\n")
	for range 2 {
		im := newImporter(t, s, nil)
		if err := im.ImportPath(context.Background(), path); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Read(context.Background(), "Patient", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if res.VersionID != 2 || !bytes.Contains(res.Body, []byte(`"active":true`)) {
		t.Errorf("after two imports: version %d body %s", res.VersionID, res.Body)
	}
}

// A record that passes the checks before the write but fails inside the backend transaction
// must not take its chunk neighbours down with it.
func TestFailedWriteKeepsNeighbours(t *testing.T) {
	s := newStore(t)
	im := newImporter(t, s, func(o *importer.Options) { o.Validator = nil; o.ChunkSize = 10 })
	content := `{"resourceType":"Patient","id":"n1"}
{"resourceType":"Patient","id":"n2","meta":5}
{"resourceType":"Patient","id":"n3"}
`
	if err := im.ImportPath(context.Background(), writeFile(t, "n.ndjson", content)); err != nil {
		t.Fatal(err)
	}
	sum := im.Summary()
	if sum.Resources != 2 || strings.Join(errorPlaces(sum), " ") != "line:2" {
		t.Fatalf("resources %d errors %v", sum.Resources, sum.Errors)
	}
	if !exists(t, s, "Patient", "n1") || !exists(t, s, "Patient", "n3") || exists(t, s, "Patient", "n2") {
		t.Error("the chunk was not replayed record by record")
	}
}

func TestImportBundles(t *testing.T) {
	const patient = `{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"aaaaaaaa-0000-4000-8000-000000000001"},"request":{"method":"POST","url":"Patient"}}`
	const obs = `{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000002","resource":{"resourceType":"Observation","id":"aaaaaaaa-0000-4000-8000-000000000002","status":"final","code":{"text":"w"},"subject":{"reference":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}`
	const badObs = `{"resource":{"resourceType":"Observation","id":"bad-obs","status":"nonsense","code":{"text":"w"}},"request":{"method":"POST","url":"Observation"}}`
	tests := []struct {
		name     string
		content  string
		want     map[string]int64
		errs     string
		present  []string
		absent   []string
		checkRef bool
	}{
		{
			name:    "transaction",
			content: `{"resourceType":"Bundle","type":"transaction","entry":[` + patient + `,` + obs + `]}`,
			want:    map[string]int64{"Patient": 1, "Observation": 1}, checkRef: true,
			present: []string{"Patient/aaaaaaaa-0000-4000-8000-000000000001", "Observation/aaaaaaaa-0000-4000-8000-000000000002"},
		},
		{
			name:    "transaction with a bad entry is not imported at all",
			content: `{"resourceType":"Bundle","type":"transaction","entry":[` + patient + `,` + badObs + `]}`,
			want:    map[string]int64{}, errs: "file",
			absent: []string{"Patient/aaaaaaaa-0000-4000-8000-000000000001", "Observation/bad-obs"},
		},
		{
			name:    "transaction whose type follows its entries",
			content: `{"entry":[` + patient + `,` + obs + `],"type":"transaction","resourceType":"Bundle"}`,
			want:    map[string]int64{"Patient": 1, "Observation": 1}, checkRef: true,
		},
		{
			name: "batch in chunks reports entry indexes",
			content: `{"resourceType":"Bundle","type":"batch","entry":[` +
				strings.Join([]string{
					`{"resource":{"resourceType":"Patient","id":"b0"},"request":{"method":"PUT","url":"Patient/b0"}}`,
					badObs,
					`{"resource":{"resourceType":"Patient","id":"b2"},"request":{"method":"PUT","url":"Patient/b2"}}`,
					`{"resource":{"resourceType":"Patient","id":"b3"},"request":{"method":"PUT","url":"Patient/b3"}}`,
					`{"resource":{"resourceType":"Patient","id":"b4","gender":"robot"},"request":{"method":"PUT","url":"Patient/b4"}}`,
				}, ",") + `]}`,
			want: map[string]int64{"Patient": 3}, errs: "entry:1 entry:4",
			present: []string{"Patient/b0", "Patient/b2", "Patient/b3"}, absent: []string{"Patient/b4"},
		},
		{
			name: "collection",
			content: `{"resourceType":"Bundle","type":"collection","entry":[
				{"resource":{"resourceType":"Patient","id":"c0"}},
				{"fullUrl":"x"},
				{"resource":{"resourceType":"Patient","id":"c2","gender":"robot"}},
				{"resource":{"resourceType":"Organization","id":"c3","name":"Org"}}]}`,
			want: map[string]int64{"Patient": 1, "Organization": 1}, errs: "entry:1 entry:2",
			present: []string{"Patient/c0", "Organization/c3"},
		},
		{
			name:    "single resource",
			content: "{\n  \"resourceType\": \"Patient\",\n  \"id\": \"single\",\n  \"active\": true\n}\n",
			want:    map[string]int64{"Patient": 1}, present: []string{"Patient/single"},
		},
		{
			name:    "document Bundle is stored as a resource",
			content: `{"resourceType":"Bundle","id":"doc1","type":"document","timestamp":"2020-01-01T00:00:00Z","identifier":{"system":"urn:s","value":"1"},"entry":[{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000009","resource":{"resourceType":"Composition","status":"final","type":{"text":"t"},"date":"2020","author":[{"display":"a"}],"title":"t"}}]}`,
			want:    map[string]int64{"Bundle": 1}, present: []string{"Bundle/doc1"},
		},
		{name: "not JSON", content: `{"resourceType":`, want: map[string]int64{}, errs: "file"},
		{name: "two documents", content: `{"resourceType":"Patient","id":"x1"} {}`, want: map[string]int64{}, errs: "file", absent: []string{"Patient/x1"}},
		{name: "array", content: `[]`, want: map[string]int64{}, errs: "file"},
		{name: "broken entry", content: `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"ok1"}}, {"resource": }]}`,
			want: map[string]int64{"Patient": 1}, errs: "entry:1", present: []string{"Patient/ok1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			im := newImporter(t, s, func(o *importer.Options) { o.ChunkSize = 2 })
			if err := im.ImportPath(context.Background(), writeFile(t, "b.json", tc.content)); err != nil {
				t.Fatal(err)
			}
			sum := im.Summary()
			if fmt.Sprint(sum.ByType) != fmt.Sprint(tc.want) {
				t.Errorf("by type %v, want %v", sum.ByType, tc.want)
			}
			if got := strings.Join(errorPlaces(sum), " "); got != tc.errs {
				t.Errorf("errors at %q, want %q: %v", got, tc.errs, sum.Errors)
			}
			for _, ref := range tc.present {
				typ, id, _ := strings.Cut(ref, "/")
				if !exists(t, s, typ, id) {
					t.Errorf("%s missing", ref)
				}
			}
			for _, ref := range tc.absent {
				typ, id, _ := strings.Cut(ref, "/")
				if exists(t, s, typ, id) {
					t.Errorf("%s imported", ref)
				}
			}
			if tc.checkRef {
				res, err := s.Read(context.Background(), "Observation", "aaaaaaaa-0000-4000-8000-000000000002")
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(res.Body, []byte(`"reference":"Patient/aaaaaaaa-0000-4000-8000-000000000001"`)) {
					t.Errorf("reference not resolved: %s", res.Body)
				}
			}
		})
	}
}

func TestImportDirectoryOrder(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a_patient.json":                `{"resourceType":"Patient","id":"pt","managingOrganization":{"reference":"Organization/org"}}`,
		"hospitalInformation1.json":     `{"resourceType":"Organization","id":"org","name":"H"}`,
		"practitionerInformation1.json": `{"resourceType":"Practitioner","id":"dr"}`,
		"notes.txt":                     `ignored`,
		"sub/more.ndjson":               `{"resourceType":"Patient","id":"sub"}`,
	}
	for name, c := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t)
	im := newImporter(t, s, nil)
	if err := im.ImportPath(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	sum := im.Summary()
	if sum.Files != 4 || sum.Resources != 4 || sum.ErrorCount != 0 {
		t.Fatalf("%+v", sum)
	}
	page, err := s.History(context.Background(), backend.HistoryQuery{Count: 10})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for i := len(page.Entries) - 1; i >= 0; i-- {
		order = append(order, page.Entries[i].Resource.ID)
	}
	if got := strings.Join(order, " "); got != "org dr pt sub" {
		t.Errorf("import order %s", got)
	}
}

func TestImportPathErrors(t *testing.T) {
	im := newImporter(t, newStore(t), nil)
	if err := im.ImportPath(context.Background(), filepath.Join(t.TempDir(), "missing.ndjson")); err == nil {
		t.Error("a missing path imported")
	}
	if err := im.ImportPath(context.Background(), writeFile(t, "x.csv", "a,b")); err == nil {
		t.Error("a .csv file imported")
	}
}

func TestImportStopsWhenCancelled(t *testing.T) {
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, `{"resourceType":"Patient","id":"c%d"}`+"\n", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	im := newImporter(t, newStore(t), nil)
	if err := im.ImportPath(ctx, writeFile(t, "c.ndjson", b.String())); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestRecordSizeLimit(t *testing.T) {
	big := `{"resourceType":"Patient","id":"big","name":[{"family":"` + strings.Repeat("x", 300) + `"}]}`
	tests := []struct {
		name, file, content string
		errs                string
		present, absent     []string
	}{
		{"NDJSON line", "s.ndjson", `{"resourceType":"Patient","id":"s1"}` + "\n" + big + "\n" + `{"resourceType":"Patient","id":"s3"}`, "line:2", []string{"s1", "s3"}, []string{"big"}},
		{"collection entry", "s.json", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":` + big + `},{"resource":{"resourceType":"Patient","id":"s1"}}]}`, "entry:0", []string{"s1"}, []string{"big"}},
		{"transaction entry", "s.json", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"s1"},"request":{"method":"PUT","url":"Patient/s1"}},{"resource":` + big + `,"request":{"method":"PUT","url":"Patient/big"}}]}`, "entry:1", nil, []string{"s1", "big"}},
		{"batch entry", "s.json", `{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resourceType":"Patient","id":"s1"},"request":{"method":"PUT","url":"Patient/s1"}},{"resource":` + big + `,"request":{"method":"PUT","url":"Patient/big"}},{"resource":{"resourceType":"Patient","id":"s3"},"request":{"method":"PUT","url":"Patient/s3"}}]}`, "entry:1", []string{"s1", "s3"}, []string{"big"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			im := newImporter(t, s, func(o *importer.Options) { o.MaxRecordBytes = 200 })
			if err := im.ImportPath(context.Background(), writeFile(t, tc.file, tc.content)); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(errorPlaces(im.Summary()), " "); got != tc.errs {
				t.Errorf("errors at %q, want %q: %v", got, tc.errs, im.Summary().Errors)
			}
			for _, id := range tc.present {
				if !exists(t, s, "Patient", id) {
					t.Errorf("Patient/%s missing", id)
				}
			}
			for _, id := range tc.absent {
				if exists(t, s, "Patient", id) {
					t.Errorf("Patient/%s imported", id)
				}
			}
		})
	}
}
