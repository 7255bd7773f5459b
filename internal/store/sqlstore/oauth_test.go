package sqlstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func TestOAuthSingleUse(t *testing.T) { forEachDriver(t, testOAuthSingleUse) }

func testOAuthSingleUse(t *testing.T, driver string) {
	ctx := context.Background()
	s := openDriver(t, driver)
	now := time.Unix(1_800_000_000, 0).UTC()
	rec := sqlstore.OAuthRequest{Kind: sqlstore.KindCode, Signature: "sig", RequestID: "req", ClientID: "c", Subject: "u", ExpiresAt: now.Add(time.Minute), Data: []byte(`{}`)}
	if err := s.CreateOAuthRequest(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.DeactivateOAuthRequest(ctx, sqlstore.KindCode, "sig"); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, sqlstore.ErrOAuthInactive) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d deactivations succeeded", wins)
	}
	got, err := s.GetOAuthRequest(ctx, sqlstore.KindCode, "sig")
	if err != nil || got.Active || got.Subject != "u" || !got.ExpiresAt.Equal(rec.ExpiresAt) {
		t.Fatalf("%v %+v", err, got)
	}
	if err := s.DeactivateOAuthRequest(ctx, sqlstore.KindCode, "missing"); !errors.Is(err, sqlstore.ErrOAuthNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestOAuthRevocationList(t *testing.T) { forEachDriver(t, testOAuthRevocationList) }

func testOAuthRevocationList(t *testing.T, driver string) {
	ctx := context.Background()
	s := openDriver(t, driver)
	now := time.Now().UTC().Truncate(time.Second)
	for i, sig := range []string{"jti-1", "jti-2"} {
		if err := s.CreateOAuthRequest(ctx, sqlstore.OAuthRequest{Kind: sqlstore.KindAccess, Signature: sig, RequestID: "grant", ClientID: "c",
			ExpiresAt: now.Add(time.Duration(i+1) * time.Hour), Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if r, _ := s.Revoked(ctx, "jti-1"); r {
		t.Fatal("revoked before revocation")
	}
	if err := s.RevokeAccessByRequestID(ctx, "grant"); err != nil {
		t.Fatal(err)
	}
	for _, j := range []string{"jti-1", "jti-2"} {
		if r, err := s.Revoked(ctx, j); err != nil || !r {
			t.Fatalf("%s: %v %v", j, r, err)
		}
		if _, err := s.GetOAuthRequest(ctx, sqlstore.KindAccess, j); !errors.Is(err, sqlstore.ErrOAuthNotFound) {
			t.Fatalf("record of %s kept: %v", j, err)
		}
	}
	// Revoked jtis are forgotten only once the token itself has expired.
	if _, err := s.CleanupOAuth(ctx, now.Add(90*time.Minute), time.Hour); err != nil {
		t.Fatal(err)
	}
	if r, _ := s.Revoked(ctx, "jti-1"); r {
		t.Error("expired jti kept")
	}
	if r, _ := s.Revoked(ctx, "jti-2"); !r {
		t.Error("live revoked jti forgotten")
	}
}

func TestOAuthAssertionJTIAndLaunch(t *testing.T) { forEachDriver(t, testOAuthAssertionJTIAndLaunch) }

func testOAuthAssertionJTIAndLaunch(t *testing.T, driver string) {
	ctx := context.Background()
	s := openDriver(t, driver)
	now := time.Now().UTC().Truncate(time.Second)
	if err := s.UseAssertionJTI(ctx, "c j1", now.Add(time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := s.UseAssertionJTI(ctx, "c j1", now.Add(time.Minute), now); !errors.Is(err, sqlstore.ErrOAuthExists) {
		t.Fatalf("replay: %v", err)
	}
	// After the assertion expired its jti may be seen again (it could not be accepted anyway).
	if err := s.UseAssertionJTI(ctx, "c j1", now.Add(3*time.Minute), now.Add(2*time.Minute)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	l := sqlstore.OAuthLaunch{IDHash: "h", ClientID: "app", Patient: "p", Encounter: "e", ExpiresAt: now.Add(time.Minute)}
	if err := s.CreateOAuthLaunch(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOAuthLaunch(ctx, "h", "other", now); !errors.Is(err, sqlstore.ErrOAuthNotFound) {
		t.Fatalf("launch for another client: %v", err)
	}
	if _, err := s.GetOAuthLaunch(ctx, "h", "app", now.Add(2*time.Minute)); !errors.Is(err, sqlstore.ErrOAuthNotFound) {
		t.Fatalf("expired launch: %v", err)
	}
	got, err := s.ConsumeOAuthLaunch(ctx, "h", "app", now)
	if err != nil || got.Patient != "p" || got.Encounter != "e" || string(got.FHIRContext) != "[]" {
		t.Fatalf("consume: %v %+v", err, got)
	}
	if _, err := s.ConsumeOAuthLaunch(ctx, "h", "app", now); !errors.Is(err, sqlstore.ErrOAuthNotFound) {
		t.Fatalf("second consume: %v", err)
	}
}

func TestOAuthTransactionRollback(t *testing.T) { forEachDriver(t, testOAuthTransactionRollback) }

func testOAuthTransactionRollback(t *testing.T, driver string) {
	ctx := context.Background()
	s := openDriver(t, driver)
	tctx, err := s.BeginOAuthTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateOAuthRequest(tctx, sqlstore.OAuthRequest{Kind: sqlstore.KindRefresh, Signature: "r", RequestID: "g", ClientID: "c", ExpiresAt: time.Now().Add(time.Hour), Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOAuthRequest(tctx, sqlstore.KindRefresh, "r"); err != nil {
		t.Fatalf("own write not visible in tx: %v", err)
	}
	if err := s.RollbackOAuthTx(tctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOAuthRequest(ctx, sqlstore.KindRefresh, "r"); !errors.Is(err, sqlstore.ErrOAuthNotFound) {
		t.Fatalf("rolled back write visible: %v", err)
	}
}
