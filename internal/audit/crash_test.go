package audit_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	execpkg "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// The crash test runs the trail in a child process (this test binary re-executed as
// TestCrashWriterProcess), kills it with SIGKILL in the middle of its writes, and checks that
// every event the child acknowledged (Record returned nil with sync durability, then the child
// printed "ack <request id>") is in the chain, and that the chain and its signed checkpoints
// verify. Twice on the same database: the second writer continues a chain cut by a crash.
const (
	envCrashDB  = "FHIRGATE_AUDIT_CRASH_DB"
	envCrashKey = "FHIRGATE_AUDIT_CRASH_KEY"
	envCrashRun = "FHIRGATE_AUDIT_CRASH_RUN"
)

// TestCrashWriterProcess is the child: it records events from 4 goroutines until it is killed.
func TestCrashWriterProcess(t *testing.T) {
	dsn := os.Getenv(envCrashDB)
	if dsn == "" {
		t.Skip("helper process of TestCrashLosesNoAcknowledgedEvent")
	}
	der, err := base64.StdEncoding.DecodeString(os.Getenv(envCrashKey))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParseECPrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: dsn, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := audit.Open(context.Background(), audit.Options{
		Store: store, Durability: audit.DurabilitySync, Logger: quiet, Source: audit.Source{Observer: "https://fhirgate.test"},
		Signer:            audit.NewJOSESigner(func() (audit.SigningKey, error) { return audit.SigningKey{KID: "crash", Key: priv}, nil }),
		CheckpointEntries: 25,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	run := os.Getenv(envCrashRun)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				e := readEvent(i, time.Time{})
				e.RequestID = fmt.Sprintf("%s-%d-%d", run, w, i)
				if err := tr.Record(context.Background(), e); err != nil {
					fmt.Fprintln(os.Stderr, "record:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(out, "ack", e.RequestID)
				out.Flush() // the acknowledgement leaves the process only after the commit
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// crashOnce starts a writer and SIGKILLs it after it acknowledged at least n events; it returns
// every acknowledged request id.
func crashOnce(t *testing.T, db, key, run string, n int) []string {
	t.Helper()
	cmd := execpkg.Command(os.Args[0], "-test.run=^TestCrashWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashDB+"="+db, envCrashKey+"="+key, envCrashRun+"="+run)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		acked = append(acked, id)
		if len(acked) == n && !killed {
			// Kill in the middle of the writes; acknowledgements already in the pipe count.
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("writer ended before it was killed (%d acks): %v\n%s", len(acked), err, stderr.String())
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("writer was not killed by SIGKILL: %v\n%s", err, stderr.String())
	}
	return acked
}

func TestCrashLosesNoAcknowledgedEvent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(der)
	db := filepath.Join(t.TempDir(), "crash.db")

	acked := crashOnce(t, db, key, "a", 150)
	acked = append(acked, crashOnce(t, db, key, "b", 150)...)

	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: db, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	have := map[string]bool{}
	if err := s.ScanAudit(context.Background(), 0, func(e sqlstore.AuditEntry) error {
		have[e.RequestID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, id := range acked {
		if !have[id] {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged event %s is not in the chain", id)
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged events lost", lost, len(acked))
	}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "crash", Algorithm: "ES256", Use: "sig"}}}
	rep, err := audit.Verify(context.Background(), s, audit.NewKeySetVerifier(jwks))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("chain does not verify after the crashes: %v", rep.Problems)
	}
	if rep.Entries < int64(len(acked)) || rep.Signed == 0 {
		t.Fatalf("report %+v: want at least %d entries and signed checkpoints", rep, len(acked))
	}
	t.Logf("%d acknowledged, %d in the chain (committed but killed before the ack: %d), %d checkpoints signed",
		len(acked), rep.Entries, rep.Entries-int64(len(acked)), rep.Signed)

	// A trail opened after the crashes continues the chain.
	tr := openTrail(t, s, audit.Options{})
	if err := tr.Record(context.Background(), readEvent(1, time.Time{})); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, s, nil, rep.Entries+1)
}
