package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
)

func entries(n int) []audit.Entry {
	var out []audit.Entry
	for i := 1; i <= n; i++ {
		e := readEvent(i, time.Date(2026, 11, 23, 12, 0, i, 0, time.UTC))
		e.Outcome = audit.OutcomeSuccess
		out = append(out, audit.Entry{Seq: int64(i), Hash: strings.Repeat("ab", 32), PrevHash: strings.Repeat("cd", 32),
			AuditEvent: json.RawMessage(`{"resourceType":"AuditEvent","id":"e` + itoa(i) + `"}`), Event: e})
	}
	return out
}

func TestFileSinkRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit", "audit.jsonl")
	s, err := audit.NewFileSink(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	all := entries(40) // ~190 bytes a line: several rotations
	for i := 0; i < len(all); i += 5 {
		if err := s.Write(context.Background(), all[i:i+5]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, p := range []string{path + ".2", path + ".1", path} {
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("rotated file: %v", err)
		}
		fi, _ := f.Stat()
		if fi.Size() > 1000 {
			t.Errorf("%s is %d bytes, over the 1000 limit", p, fi.Size())
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var e struct {
				Seq        int64           `json:"seq"`
				AuditEvent json.RawMessage `json:"auditEvent"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || len(e.AuditEvent) == 0 {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			seqs = append(seqs, e.Seq)
		}
		f.Close()
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more than 2 old files kept")
	}
	// The kept files hold the newest entries, contiguous and in order.
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("kept sequences not contiguous: %v", seqs)
		}
	}
	if len(seqs) == 0 || seqs[len(seqs)-1] != 40 {
		t.Fatalf("kept sequences %v do not end at 40", seqs)
	}
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 (\S+) (\S+) fhirgate (\d+) (\S+) \[fhirgate@32473 seq="(\d+)" outcome="(\w+)" hash="([0-9a-f]+)"\] \x{feff}(\{.*\})$`)

func checkSyslog(t *testing.T, msg string, wantSeq int) {
	t.Helper()
	m := rfc5424.FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("not an RFC 5424 message: %q", msg)
	}
	if m[1] != strconv.Itoa(13*8+6) || m[5] != "read" || m[6] != strconv.Itoa(wantSeq) || m[7] != "success" {
		t.Errorf("message %d fields = pri %s msgid %s seq %s outcome %s", wantSeq, m[1], m[5], m[6], m[7])
	}
	if _, err := time.Parse(time.RFC3339Nano, m[2]); err != nil {
		t.Errorf("TIMESTAMP %q: %v", m[2], err)
	}
	if !json.Valid([]byte(m[9])) {
		t.Errorf("MSG is not JSON: %q", m[9])
	}
}

func TestSyslogSinkTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					// RFC 6587 octet counting: "LEN SP MSG"
					lenStr, err := r.ReadString(' ')
					if err != nil {
						return
					}
					n, err := strconv.Atoi(strings.TrimSpace(lenStr))
					if err != nil {
						got <- "bad frame " + lenStr
						return
					}
					buf := make([]byte, n)
					if _, err := io.ReadFull(r, buf); err != nil {
						return
					}
					got <- string(buf)
				}
			}()
		}
	}()
	s, err := audit.NewSyslogSink(audit.SyslogOptions{Network: "tcp", Address: ln.Addr().String(), Hostname: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(context.Background(), entries(3)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		checkSyslog(t, <-got, i)
	}
}

func TestSyslogSinkUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := audit.NewSyslogSink(audit.SyslogOptions{Network: "udp", Address: pc.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(context.Background(), entries(2)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for i := 1; i <= 2; i++ {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		checkSyslog(t, string(buf[:n]), i)
	}
}

func TestSyslogOptionsValidated(t *testing.T) {
	for _, o := range []audit.SyslogOptions{{Network: "quic", Address: "a:1"}, {Network: "udp", Address: "nohost"}, {Network: "udp", Address: "a:1", Facility: 24}} {
		if _, err := audit.NewSyslogSink(o); err == nil {
			t.Errorf("NewSyslogSink(%+v) = nil error", o)
		}
	}
}

func TestWebhookSinkRetries(t *testing.T) {
	var calls atomic.Int64
	var mu sync.Mutex
	var lines []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer siem" || r.Header.Get("Content-Type") != "application/x-ndjson" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		lines = append(lines, strings.Split(strings.TrimSpace(string(b)), "\n")...)
		mu.Unlock()
	}))
	defer srv.Close()
	s, err := audit.NewWebhookSink(audit.WebhookOptions{URL: srv.URL, Authorization: "Bearer siem", Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), entries(4)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || len(lines) != 4 {
		t.Fatalf("calls = %d, lines = %d; want 3 calls (two 503s) and 4 lines", calls.Load(), len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Errorf("line is not JSON: %q", l)
		}
	}
}

func TestWebhookSinkGivesUpOnClientError(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer srv.Close()
	s, _ := audit.NewWebhookSink(audit.WebhookOptions{URL: srv.URL, Backoff: time.Millisecond})
	if err := s.Write(context.Background(), entries(1)); err == nil || calls.Load() != 1 {
		t.Errorf("Write = %v after %d calls; want an error after 1", err, calls.Load())
	}
	if _, err := audit.NewWebhookSink(audit.WebhookOptions{URL: "http://siem.example.com/in"}); err == nil {
		t.Error("plain http to a remote host accepted")
	}
}

// collectSink keeps what it is given.
type collectSink struct {
	mu      sync.Mutex
	entries []audit.Entry
}

func (c *collectSink) Name() string { return "collect" }
func (c *collectSink) Write(_ context.Context, es []audit.Entry) error {
	c.mu.Lock()
	c.entries = append(c.entries, es...)
	c.mu.Unlock()
	return nil
}
func (c *collectSink) Close() error { return nil }

func TestSinksGetCommittedEntriesInOrder(t *testing.T) {
	s := openStore(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fileSink, err := audit.NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	col := &collectSink{}
	tr := openTrail(t, s, audit.Options{Durability: audit.DurabilityBatch, Sinks: []audit.Sink{col, fileSink}})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				if err := tr.Record(context.Background(), readEvent(w*25+i, time.Time{})); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(col.entries) != 200 {
		t.Fatalf("sink got %d entries, want 200", len(col.entries))
	}
	for i, e := range col.entries {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		if i > 0 && e.PrevHash != col.entries[i-1].Hash {
			t.Fatalf("entry %d does not chain to the previous one", e.Seq)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil || strings.Count(string(data), "\n") != 200 {
		t.Errorf("file sink has %d lines, %v; want 200", strings.Count(string(data), "\n"), err)
	}
}
