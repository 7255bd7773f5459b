package keys_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func open(t *testing.T) (*sqlstore.Store, *clock) {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "k.db"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func TestPersistRotateOverlap(t *testing.T) {
	ctx := context.Background()
	db, ck := open(t)
	kek := make([]byte, 32)
	rand.Read(kek)
	opts := keys.Options{Store: db, KEK: kek, Now: ck.Now, Overlap: 2 * time.Hour, RotateEvery: 24 * time.Hour, Reload: time.Minute}
	m, err := keys.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := m.Current(keys.PurposeAccess)
	id1, _ := m.Current(keys.PurposeID)
	if a1.Alg != "ES256" || id1.Alg != "RS256" || len(m.JWKS().Keys) != 2 {
		t.Fatalf("initial keys %s %s %d", a1.Alg, id1.Alg, len(m.JWKS().Keys))
	}
	// Reopening with the same KEK finds the same keys; a different KEK cannot decrypt them.
	m2, err := keys.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := m2.Current(keys.PurposeAccess); k.KID != a1.KID {
		t.Fatalf("reopen: %s != %s", k.KID, a1.KID)
	}
	bad := opts
	bad.KEK = make([]byte, 32)
	if _, err := keys.Open(ctx, bad); !errors.Is(err, keys.ErrKEK) {
		t.Fatalf("wrong KEK: %v", err)
	}
	// Rotation: the new key signs, the old one stays published for the overlap.
	kid2, err := m.Rotate(ctx, keys.PurposeAccess)
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := m.Current(keys.PurposeAccess); k.KID != kid2 {
		t.Fatal("rotated key is not current")
	}
	if _, err := m.Verifier(keys.PurposeAccess, a1.KID); err != nil {
		t.Fatalf("old key not accepted during overlap: %v", err)
	}
	if len(m.JWKS().Keys) != 3 {
		t.Fatalf("jwks during overlap: %d keys", len(m.JWKS().Keys))
	}
	ck.add(3 * time.Hour)
	if _, err := m.Verifier(keys.PurposeAccess, a1.KID); !errors.Is(err, keys.ErrNoKey) {
		t.Fatalf("old key accepted after overlap: %v", err)
	}
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m.JWKS().Keys) != 2 {
		t.Fatalf("jwks after overlap: %d keys", len(m.JWKS().Keys))
	}
	// Automatic rotation by age.
	ck.add(25 * time.Hour)
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if k, _ := m.Current(keys.PurposeID); k.KID == id1.KID {
		t.Fatal("ID key not rotated after RotateEvery")
	}
	// The HMAC secret is never published.
	for _, k := range m.JWKS().Keys {
		if k.Algorithm == "HS256" {
			t.Fatal("HMAC secret published")
		}
	}
	// Private key material is encrypted at rest.
	recs, _ := db.ListOAuthKeys(ctx)
	for _, r := range recs {
		if len(r.PrivateEnc) < 28 {
			t.Fatalf("key %s not encrypted", r.KID)
		}
	}
}

func TestLoadKEK(t *testing.T) {
	dir := t.TempDir()
	k1, src, err := keys.LoadKEK("", dir)
	if err != nil || len(k1) != 32 || src != filepath.Join(dir, keys.KEKFile) {
		t.Fatalf("create: %v %s", err, src)
	}
	st, _ := os.Stat(src)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
	k2, _, err := keys.LoadKEK("", dir)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("reload: %v", err)
	}
	os.Chmod(src, 0o644)
	if _, _, err := keys.LoadKEK("", dir); !errors.Is(err, keys.ErrKEK) {
		t.Fatalf("world-readable file accepted: %v", err)
	}
	if k, src, err := keys.LoadKEK("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", ""); err != nil || len(k) != 32 || src != "env" {
		t.Fatalf("env: %v", err)
	}
	if _, _, err := keys.LoadKEK("too-short", ""); !errors.Is(err, keys.ErrKEK) {
		t.Fatalf("short env: %v", err)
	}
}

func TestPublicKeysAccessOnly(t *testing.T) {
	db, ck := open(t)
	kek := make([]byte, 32)
	rand.Read(kek)
	m, err := keys.Open(context.Background(), keys.Options{Store: db, KEK: kek, Now: ck.Now})
	if err != nil {
		t.Fatal(err)
	}
	set, err := m.PublicKeys(context.Background())
	if err != nil || len(set.Keys) != 1 || set.Keys[0].Algorithm != "ES256" || !set.Keys[0].IsPublic() {
		t.Fatalf("%v %+v", err, set)
	}
}
