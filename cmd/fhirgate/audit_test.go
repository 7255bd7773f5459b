package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func TestAuditVerifyAndList(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	store, err := sqlstore.Open(ctx, sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(dir, "fhirgate.db")})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := audit.NewJOSESigner(func() (audit.SigningKey, error) { return audit.SigningKey{KID: "a-test", Key: priv}, nil })
	tr, err := audit.Open(ctx, audit.Options{Store: store, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		p := "p1"
		if i%2 == 1 {
			p = "p2"
		}
		if err := tr.Record(ctx, audit.Event{Action: audit.ActionRead, Status: 200, ClientID: "app", Patients: []string{p}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &priv.PublicKey, KeyID: "a-test", Algorithm: "ES256"}}})
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}

	out, _, err := runArgs(t, nil, "audit", "verify", "--data-dir", dir, "--jwks", jwksFile)
	if err != nil || !strings.Contains(out, "OK: the chain is intact") || !strings.Contains(out, "signature verified: 1") {
		t.Fatalf("audit verify = %q, %v", out, err)
	}
	out, _, err = runArgs(t, nil, "audit", "list", "--data-dir", dir, "--patient", "p2", "--limit", "0")
	if err != nil || strings.Count(out, "\n") != 10 || !strings.Contains(out, `"auditEvent":{"resourceType":"AuditEvent"`) {
		t.Fatalf("audit list --patient p2 = %q, %v", out, err)
	}
	out, _, err = runArgs(t, nil, "audit", "list", "--data-dir", dir, "--after", "15")
	if err != nil || strings.Count(out, "\n") != 5 || !strings.HasPrefix(out, `{"seq":16,`) {
		t.Fatalf("audit list --after 15 = %q, %v", out, err)
	}

	if _, err := store.DB().Exec(`UPDATE audit_log SET outcome = 'denied' WHERE seq = 7`); err != nil {
		t.Fatal(err)
	}
	store.Close()
	out, _, err = runArgs(t, nil, "audit", "verify", "--data-dir", dir, "--jwks", jwksFile)
	if !errors.Is(err, errAuditTampered) || !strings.Contains(out, "FIRST BAD ENTRY: 7 (altered)") {
		t.Fatalf("audit verify after tampering = %q, %v; want entry 7 named", out, err)
	}
	if _, _, err := runArgs(t, nil, "audit", "shred"); !errors.Is(err, errUsage) {
		t.Errorf("audit shred: err = %v, want usage", err)
	}
}
