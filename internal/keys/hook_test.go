package keys_test

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/keys"
)

// The rotation hook sees manual and automatic rotations, not the creation of the first keys.
func TestRotationHook(t *testing.T) {
	ctx := context.Background()
	db, ck := open(t)
	kek := make([]byte, 32)
	rand.Read(kek)
	m, err := keys.Open(ctx, keys.Options{Store: db, KEK: kek, Now: ck.Now, RotateEvery: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []keys.Rotation
	m.SetRotationHook(func(_ context.Context, r keys.Rotation) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	})
	kid, err := m.Rotate(ctx, keys.PurposeHMAC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Rotate(ctx, keys.Purpose("nope")); err == nil {
		t.Fatal("unknown purpose rotated")
	}
	ck.add(25 * time.Hour)
	if err := m.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("hook calls %+v", got)
	}
	if got[0] != (keys.Rotation{Purpose: keys.PurposeHMAC, KID: kid}) {
		t.Errorf("manual rotation %+v", got[0])
	}
	if got[1].Err == nil || got[1].KID != "" || got[1].Automatic {
		t.Errorf("failed rotation %+v", got[1])
	}
	a, _ := m.Current(keys.PurposeAccess)
	id, _ := m.Current(keys.PurposeID)
	if got[2] != (keys.Rotation{Purpose: keys.PurposeAccess, KID: a.KID, Automatic: true}) || got[3] != (keys.Rotation{Purpose: keys.PurposeID, KID: id.KID, Automatic: true}) {
		t.Errorf("automatic rotations %+v", got[2:])
	}
	m.SetRotationHook(nil)
	if _, err := m.Rotate(ctx, keys.PurposeHMAC); err != nil || len(got) != 4 {
		t.Errorf("hook removed but called: %v %d", err, len(got))
	}
}
