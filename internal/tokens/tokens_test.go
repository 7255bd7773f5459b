package tokens_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

func minter(t *testing.T) *tokens.Minter {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Options{Driver: "sqlite", DSN: filepath.Join(t.TempDir(), "t.db"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek := make([]byte, 32)
	rand.Read(kek)
	km, err := keys.Open(context.Background(), keys.Options{Store: db, KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	return &tokens.Minter{Keys: km, Issuer: "https://as.example", Audience: "https://as.example/fhir"}
}

func claims() tokens.AccessClaims {
	now := time.Now().Unix()
	return tokens.AccessClaims{Issuer: "https://as.example", Audience: "https://as.example/fhir", Subject: "alice", ClientID: "app",
		Expiry: now + 300, IssuedAt: now, NotBefore: now, ID: tokens.NewJTI(), Scope: "patient/*.rs", Patient: "p1"}
}

func TestAccessRoundTrip(t *testing.T) {
	m := minter(t)
	c := claims()
	tok, err := m.SignAccess(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.VerifyAccess(tok)
	if err != nil || got.Patient != "p1" || got.ID != c.ID {
		t.Fatalf("%v %+v", err, got)
	}
	if tokens.PeekJTI(tok) != c.ID {
		t.Fatal("PeekJTI")
	}
}

func TestVerifyRejects(t *testing.T) {
	m := minter(t)
	for name, mod := range map[string]func(*tokens.AccessClaims){
		"expired":    func(c *tokens.AccessClaims) { c.Expiry = time.Now().Unix() - 1 },
		"aud":        func(c *tokens.AccessClaims) { c.Audience = "https://as.example/fhir/" },
		"iss":        func(c *tokens.AccessClaims) { c.Issuer = "https://evil.example" },
		"no jti":     func(c *tokens.AccessClaims) { c.ID = "" },
		"future nbf": func(c *tokens.AccessClaims) { c.NotBefore = time.Now().Unix() + 3600 },
	} {
		c := claims()
		mod(&c)
		tok, _ := m.SignAccess(c)
		if _, err := m.VerifyAccess(tok); !errors.Is(err, tokens.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An ID token (RS256, typ JWT) is not an access token.
	id, _ := m.SignID(tokens.IDClaims{Issuer: "https://as.example", Subject: "alice", Audience: []string{"app"}, Expiry: time.Now().Unix() + 60})
	if _, err := m.VerifyAccess(id); !errors.Is(err, tokens.ErrInvalid) {
		t.Error("ID token accepted as access token")
	}
	// A token signed by another key with a made-up kid.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k, KeyID: "a-forged"}}, (&jose.SignerOptions{}).WithType("at+jwt"))
	forged, _ := jwt.Signed(sig).Claims(claims()).Serialize()
	if _, err := m.VerifyAccess(forged); !errors.Is(err, tokens.ErrInvalid) {
		t.Error("forged token accepted")
	}
	// Wrong typ with a valid key.
	cur, _ := m.Keys.Current(keys.PurposeAccess)
	sig, _ = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: cur.Signer, KeyID: cur.KID}}, (&jose.SignerOptions{}).WithType("JWT"))
	wrongTyp, _ := jwt.Signed(sig).Claims(claims()).Serialize()
	if _, err := m.VerifyAccess(wrongTyp); !errors.Is(err, tokens.ErrInvalid) {
		t.Error("typ JWT accepted")
	}
	// alg none / garbage.
	for _, raw := range []string{"", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", strings.Repeat("x", 5000)} {
		if _, err := m.VerifyAccess(raw); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
}

func FuzzPeekJTI(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0.sig")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, s string) {
		_ = tokens.PeekJTI(s)
	})
}
