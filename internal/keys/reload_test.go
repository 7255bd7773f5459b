package keys_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/keys"
)

// Two instances on one store: a key rotated at A is in B's PublicKeys (what B's token verifier
// asks when it meets an unknown kid) once B's copy is a second old, without waiting for B's
// minute-long reload.
func TestPublicKeysSeeOtherInstanceRotation(t *testing.T) {
	ctx := context.Background()
	db, ck := open(t)
	kek := make([]byte, 32)
	rand.Read(kek)
	opts := keys.Options{Store: db, KEK: kek, Now: ck.Now, Overlap: 2 * time.Hour, Reload: time.Minute}
	a, err := keys.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := a.Rotate(ctx, keys.PurposeAccess)
	if err != nil {
		t.Fatal(err)
	}
	has := func() bool {
		set, err := b.PublicKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(set.Key(kid)) == 1
	}
	if has() {
		t.Fatal("B saw the new key without rereading the store (the test's clock has not moved)")
	}
	ck.add(1500 * time.Millisecond)
	if !has() {
		t.Errorf("B's PublicKeys lacks the key rotated at A 1.5s ago")
	}
}

// Automatic rotation on two instances sharing a store makes one new key, not one per instance:
// the second looks at the store again before rotating.
func TestAutomaticRotationOncePerDeployment(t *testing.T) {
	ctx := context.Background()
	db, ck := open(t)
	kek := make([]byte, 32)
	rand.Read(kek)
	opts := keys.Options{Store: db, KEK: kek, Now: ck.Now, Overlap: 2 * time.Hour, RotateEvery: 24 * time.Hour, Reload: 100 * time.Hour}
	a, err := keys.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := keys.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	before := len(b.JWKS().Keys)
	ck.add(25 * time.Hour)
	if err := a.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	ka, _ := a.Current(keys.PurposeAccess)
	kb, _ := b.Current(keys.PurposeAccess)
	if ka.KID != kb.KID {
		t.Errorf("instances sign with different keys after automatic rotation: %s and %s", ka.KID, kb.KID)
	}
	// One new access and one new ID key published, the old ones kept for the overlap.
	if got := len(b.JWKS().Keys); got != before+2 {
		t.Errorf("JWKS has %d keys after rotation, want %d", got, before+2)
	}
}
