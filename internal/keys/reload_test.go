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
