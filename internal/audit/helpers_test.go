package audit_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// clock is a manual clock for tests: time moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "fhirgate.db"), Logger: quiet})
	if err != nil {
		t.Fatalf("sqlstore.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testKey is a real ES256 key with its public JWKS.
type testKey struct {
	kid    string
	priv   *ecdsa.PrivateKey
	signer *audit.JOSESigner
	jwks   jose.JSONWebKeySet
}

func newTestKey(t testing.TB, kid string) *testKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &testKey{kid: kid, priv: priv}
	k.signer = audit.NewJOSESigner(func() (audit.SigningKey, error) { return audit.SigningKey{KID: kid, Key: priv}, nil })
	k.jwks = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: kid, Algorithm: "ES256", Use: "sig"}}}
	return k
}

func (k *testKey) verifier() *audit.KeySetVerifier { return audit.NewKeySetVerifier(k.jwks) }

func openTrail(t testing.TB, s audit.Store, opts audit.Options) *audit.Trail {
	t.Helper()
	opts.Store = s
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	if opts.Source.Observer == "" {
		opts.Source.Observer = "https://fhirgate.test"
	}
	tr, err := audit.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("audit.Open: %v", err)
	}
	t.Cleanup(func() { tr.Close(context.Background()) })
	return tr
}

func readEvent(i int, at time.Time) audit.Event {
	return audit.Event{
		Time:         at,
		Action:       audit.ActionRead,
		Status:       200,
		ClientID:     "app",
		Subject:      "alice",
		FHIRUser:     "Patient/p1",
		SourceIP:     "10.0.0.1",
		ResourceType: "Observation",
		Resources:    []string{"Observation/o" + itoa(i)},
		Patients:     []string{"Patient/p" + itoa(i%3)},
		Count:        1,
		RequestID:    "req-" + itoa(i),
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

// fill records n events in order, with a checkpoint every 10 when key is set.
func fill(t testing.TB, s *sqlstore.Store, n int, key *testKey) {
	t.Helper()
	c := newClock()
	// Batch durability: Checkpoint and Close commit what is queued, so the chain is the same as
	// with sync, without an fsync per event.
	opts := audit.Options{Now: c.Now, Durability: audit.DurabilityBatch, FlushInterval: time.Hour}
	if key != nil {
		opts.Signer = key.signer
	}
	tr := openTrail(t, s, opts)
	ctx := context.Background()
	for i := 1; i <= n; i++ {
		c.Advance(time.Second)
		if err := tr.Record(ctx, readEvent(i, time.Time{})); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
		if key != nil && i%10 == 0 {
			if err := tr.Checkpoint(ctx); err != nil {
				t.Fatalf("Checkpoint: %v", err)
			}
		}
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
