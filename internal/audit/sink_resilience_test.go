package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
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
	"github.com/fhirgate/fhirgate/internal/config"
)

// received collects the sequence numbers a receiver got, in arrival order.
type received struct {
	mu   sync.Mutex
	seqs []int64
}

func (r *received) add(seq int64) {
	r.mu.Lock()
	r.seqs = append(r.seqs, seq)
	r.mu.Unlock()
}

// waitAll waits until every seq 1..n arrived, then checks that first arrivals are in chain order
// (delivery is at least once: a repeat is allowed, a gap or a reordering is not).
func (r *received) waitAll(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.mu.Lock()
		seen := map[int64]bool{}
		var first []int64
		for _, s := range r.seqs {
			if !seen[s] {
				seen[s] = true
				first = append(first, s)
			}
		}
		r.mu.Unlock()
		complete := true
		for i := int64(1); i <= n; i++ {
			if !seen[i] {
				complete = false
				break
			}
		}
		if complete {
			for i, s := range first {
				if s != int64(i+1) {
					t.Fatalf("arrival %d is seq %d: entries out of order or missing (%v)", i, s, first)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver has %d distinct entries, want 1..%d", len(seen), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syslogCollector is an RFC 5425/6587 collector (octet counting) that can go down and come back
// on the same address.
type syslogCollector struct {
	t    *testing.T
	addr string
	tls  *tls.Config
	got  *received
	msgs chan string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

var sdSeq = regexp.MustCompile(`seq="(\d+)"`)

func startSyslogCollector(t *testing.T, tc *tls.Config) *syslogCollector {
	c := &syslogCollector{t: t, addr: "127.0.0.1:0", tls: tc, got: &received{}, msgs: make(chan string, 10000)}
	c.up()
	t.Cleanup(c.down)
	return c
}

func (c *syslogCollector) up() {
	var ln net.Listener
	var err error
	for range 50 { // the port was just released: retry briefly
		if c.tls != nil {
			ln, err = tls.Listen("tcp", c.addr, c.tls)
		} else {
			ln, err = net.Listen("tcp", c.addr)
		}
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("collector listen: %v", err)
	}
	c.mu.Lock()
	c.ln, c.addr = ln, ln.Addr().String()
	c.mu.Unlock()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.conns = append(c.conns, conn)
			c.mu.Unlock()
			go c.read(conn)
		}
	}()
}

func (c *syslogCollector) read(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		lenStr, err := r.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(lenStr))
		if err != nil || n <= 0 || n > 1<<20 {
			c.t.Errorf("bad syslog frame length %q", lenStr)
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		m := sdSeq.FindSubmatch(buf)
		if m == nil {
			c.t.Errorf("syslog message without seq: %q", buf)
			return
		}
		seq, _ := strconv.ParseInt(string(m[1]), 10, 64)
		c.got.add(seq)
		select {
		case c.msgs <- string(buf):
		default:
		}
	}
}

// down closes the listener and every connection, as a collector that stops does.
func (c *syslogCollector) down() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// webhookReceiver takes NDJSON batches and can go down and come back on the same address.
type webhookReceiver struct {
	t    *testing.T
	addr string
	got  *received
	srv  *http.Server
}

func startWebhookReceiver(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{t: t, addr: "127.0.0.1:0", got: &received{}}
	w.up()
	t.Cleanup(w.down)
	return w
}

func (w *webhookReceiver) up() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", w.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		w.t.Fatalf("webhook listen: %v", err)
	}
	w.addr = ln.Addr().String()
	w.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/x-ndjson" {
			rw.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		var seqs []int64
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e audit.Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				rw.WriteHeader(http.StatusBadRequest)
				return
			}
			seqs = append(seqs, e.Seq)
		}
		for _, s := range seqs { // only a whole accepted batch counts
			w.got.add(s)
		}
		rw.WriteHeader(http.StatusNoContent)
	})}
	go w.srv.Serve(ln)
}

func (w *webhookReceiver) down() {
	if w.srv != nil {
		w.srv.Close()
		w.srv = nil
	}
}

// recordN records n read events.
func recordN(t *testing.T, tr *audit.Trail, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := tr.Record(context.Background(), readEvent(i, time.Time{})); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
}

// waitFailed waits until the sink reported a failed write.
func waitFailed(t *testing.T, tr *audit.Trail, sink string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().SinkFailed[sink] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sink %s never failed while its receiver was down", sink)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testSinkOutage runs a trail whose sink's receiver goes down and comes back: nothing recorded
// meanwhile may be lost, whether it waited in memory or (past the small SinkQueue) in the store.
func testSinkOutage(t *testing.T, name string, sink audit.Sink, got *received, down, up func()) {
	s := openStore(t)
	tr := openTrail(t, s, audit.Options{
		Durability: audit.DurabilityBatch, FlushInterval: time.Millisecond,
		Sinks: []audit.Sink{sink}, SinkQueue: 16, SinkRetry: 5 * time.Millisecond, SinkRetryMax: 50 * time.Millisecond,
	})
	recordN(t, tr, 1, 20)
	got.waitAll(t, 20)

	down()
	recordN(t, tr, 21, 200) // far past SinkQueue: the sink must be fed from the store
	waitFailed(t, tr, name)
	if st := tr.Stats(); st.SinkDelivered[name] >= 220 {
		t.Fatalf("sink delivered %d entries while its receiver was down", st.SinkDelivered[name])
	}
	time.Sleep(100 * time.Millisecond) // a few failed retries
	up()
	got.waitAll(t, 220)
	recordN(t, tr, 221, 30) // back to live delivery
	got.waitAll(t, 250)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := tr.Stats()
	if st.SinkDropped[name] != 0 || st.SinkDelivered[name] != 250 {
		t.Errorf("stats: dropped %d, delivered up to %d; want 0 and 250", st.SinkDropped[name], st.SinkDelivered[name])
	}
}

func TestWebhookDownAndBackLosesNothing(t *testing.T) {
	w := startWebhookReceiver(t)
	sink, err := audit.NewWebhookSink(audit.WebhookOptions{URL: "http://" + w.addr + "/in", MaxAttempts: 1,
		Client: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	testSinkOutage(t, "webhook", sink, w.got, w.down, w.up)
}

func TestSyslogTCPDownAndBackLosesNothing(t *testing.T) {
	c := startSyslogCollector(t, nil)
	sink, err := audit.NewSyslogSink(audit.SyslogOptions{Network: "tcp", Address: c.addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	testSinkOutage(t, "syslog", sink, c.got, c.down, c.up)
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client certificate, in PEM files.
type testPKI struct {
	dir                 string
	caFile              string
	pool                *x509.CertPool
	server              tls.Certificate
	clientCert, clientK string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test syslog CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	sDER, sKey := issue(2, "collector", x509.ExtKeyUsageServerAuth, true)
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := issue(3, "fhirgate", x509.ExtKeyUsageClientAuth, false)
	p.clientCert, p.clientK = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	writePEM(t, p.clientCert, "CERTIFICATE", cDER)
	kDER, _ := x509.MarshalECPrivateKey(cKey)
	writePEM(t, p.clientK, "EC PRIVATE KEY", kDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSyslogTLSMutual sends through the configuration path (FromConfig reading the PEM files) to
// a collector that requires a client certificate, then checks that an unknown CA is refused.
func TestSyslogTLSMutual(t *testing.T) {
	p := newTestPKI(t)
	c := startSyslogCollector(t, &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: p.pool, MinVersion: tls.VersionTLS12})
	cfg := config.DefaultAudit()
	cfg.Alerts = config.AuditAlerts{}
	cfg.Syslog = config.AuditSyslog{Network: "tls", Address: c.addr, Facility: 13, Hostname: "gw1",
		CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientK}
	opts, err := audit.FromConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Sinks) != 1 || opts.Sinks[0].Name() != "syslog" {
		t.Fatalf("sinks = %v", opts.Sinks)
	}
	sink := opts.Sinks[0]
	defer sink.Close()
	if err := sink.Write(context.Background(), entries(3)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		select {
		case m := <-c.msgs:
			checkSyslog(t, m, i)
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d not received over TLS", i)
		}
	}
	// The collector restarts: the sink notices the closed session and reconnects.
	c.down()
	c.up()
	if err := sink.Write(context.Background(), entries(4)[3:]); err != nil {
		t.Fatalf("write after the collector restarted: %v", err)
	}
	c.got.waitAll(t, 4)

	// A collector whose certificate the sink does not trust gets nothing.
	other := newTestPKI(t)
	untrusted, err := audit.NewSyslogSink(audit.SyslogOptions{Network: "tls", Address: c.addr, Timeout: time.Second,
		TLS: &tls.Config{RootCAs: other.pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer untrusted.Close()
	if err := untrusted.Write(context.Background(), entries(1)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("write to a collector with an untrusted certificate = %v", err)
	}
}

func TestSyslogTLSConfigErrors(t *testing.T) {
	cfg := config.DefaultAudit()
	cfg.Syslog = config.AuditSyslog{Network: "tls", Address: "127.0.0.1:6514", CAFile: filepath.Join(t.TempDir(), "missing.pem")}
	if _, err := audit.FromConfig(cfg, nil); err == nil {
		t.Error("missing ca_file accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("not a certificate"), 0o600)
	cfg.Syslog.CAFile = empty
	if _, err := audit.FromConfig(cfg, nil); err == nil {
		t.Error("ca_file without a certificate accepted")
	}
}

func TestWriterSinkWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	s := audit.NewWriterSink("stdout", &buf)
	if err := s.Write(context.Background(), entries(3)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3: %q", len(lines), buf.String())
	}
	for i, l := range lines {
		var e struct {
			Seq        int64           `json:"seq"`
			Hash       string          `json:"hash"`
			AuditEvent json.RawMessage `json:"auditEvent"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Seq != int64(i+1) || len(e.AuditEvent) == 0 {
			t.Errorf("line %d = %q (%v)", i, l, err)
		}
	}
	cfg := config.DefaultAudit()
	cfg.Stdout = true
	opts, err := audit.FromConfig(cfg, nil)
	if err != nil || len(opts.Sinks) != 1 || opts.Sinks[0].Name() != "stdout" {
		t.Errorf("FromConfig with stdout: %v %v", opts.Sinks, err)
	}
}

// downSink refuses every write until up is set.
type downSink struct {
	collectSink
	up     atomic.Bool
	writes atomic.Int64
}

func (d *downSink) Name() string { return "down" }
func (d *downSink) Write(ctx context.Context, es []audit.Entry) error {
	d.writes.Add(1)
	if !d.up.Load() {
		return errors.New("receiver down")
	}
	return d.collectSink.Write(ctx, es)
}

// storeOnly hides the store's SinkSource: the trail can then keep only SinkQueue entries for a
// sink that is down.
type storeOnly struct{ audit.Store }

func TestSinkWithoutStoreSourceDropsPastItsQueue(t *testing.T) {
	s := openStore(t)
	sink := &downSink{}
	tr := openTrail(t, storeOnly{s}, audit.Options{Durability: audit.DurabilityBatch, FlushInterval: time.Millisecond,
		Sinks: []audit.Sink{sink}, SinkQueue: 10, SinkRetry: time.Millisecond, SinkRetryMax: 5 * time.Millisecond})
	for i := range 50 {
		recordN(t, tr, i, 1)
		time.Sleep(time.Millisecond) // separate commits, separate offers
	}
	if err := tr.Checkpoint(context.Background()); err != nil { // everything committed and offered
		t.Fatal(err)
	}
	waitFailed(t, tr, "down")
	sink.up.Store(true)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := tr.Stats()
	if st.SinkDropped["down"] == 0 {
		t.Errorf("no batch counted as dropped: %+v", st)
	}
	if n := len(sink.entries); n == 0 || n > 10 {
		t.Errorf("sink got %d entries, want the at most 10 it could keep", n)
	}
}

func TestCloseGivesUpOnASinkThatStaysDown(t *testing.T) {
	s := openStore(t)
	sink := &downSink{}
	tr := openTrail(t, s, audit.Options{Sinks: []audit.Sink{sink}, SinkRetry: time.Millisecond, SinkRetryMax: 10 * time.Millisecond,
		SinkDrainTimeout: 200 * time.Millisecond})
	recordN(t, tr, 1, 5)
	start := time.Now()
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s with a sink down", d)
	}
	if w := sink.writes.Load(); w < 2 || w > 1000 {
		t.Errorf("%d write attempts: want retries with backoff, not none and not a hot loop", w)
	}
	if verifyOK(t, s, nil, 5); tr.Stats().SinkDelivered["down"] != 0 {
		t.Error("entries counted as delivered to a sink that was down")
	}
}
