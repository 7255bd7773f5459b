package authserver_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/fhirgate/fhirgate/internal/authserver"
)

// sharedThrottle stands in for the Redis throttle: it refuses every attempt, or fails.
type sharedThrottle struct {
	refuse, fail bool
	calls        atomic.Int64
}

func (s *sharedThrottle) Reserve(context.Context, string, string) (bool, error) {
	s.calls.Add(1)
	if s.fail {
		return false, errors.New("redis: connection refused")
	}
	return !s.refuse, nil
}

func (s *sharedThrottle) Succeed(context.Context, string, string) error {
	if s.fail {
		return errors.New("redis: connection refused")
	}
	return nil
}

// The shared throttle decides when it answers: a refusal is a 429 even for the right password.
// When it fails, the instance's own counters apply (a correct login reaches the consent page; failures still
// count towards the per-instance limit).
func TestSharedLoginThrottle(t *testing.T) {
	for _, tc := range []struct {
		name       string
		st         *sharedThrottle
		wantStatus int
	}{
		{"shared refuses", &sharedThrottle{refuse: true}, http.StatusTooManyRequests},
		{"shared fails, local allows", &sharedThrottle{fail: true}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *authserver.Config) { c.SharedThrottle = tc.st })
			_, challenge := pkcePair()
			params := e.authParams("public-app", e.appURL+"/callback", "launch/patient patient/Patient.rs", challenge)
			b := e.browser()
			_, p := e.authorize(b, params, flowOpts{stopAt: "login"})
			f := p.form(t, "/login")
			f.fields.Set("username", "alice")
			f.fields.Set("password", alicePW)
			if r := b.post(f.action, f.fields); r.status != tc.wantStatus {
				t.Errorf("login: %d, want %d", r.status, tc.wantStatus)
			}
			if tc.st.calls.Load() == 0 {
				t.Error("the shared throttle was not asked")
			}
		})
	}
	// Failing shared throttle: the local counters still limit guessing.
	e := newEnv(t, func(c *authserver.Config) { c.SharedThrottle = &sharedThrottle{fail: true} })
	_, challenge := pkcePair()
	b := e.browser()
	_, p := e.authorize(b, e.authParams("public-app", e.appURL+"/callback", "launch/patient patient/Patient.rs", challenge), flowOpts{stopAt: "login"})
	f := p.form(t, "/login")
	f.fields.Set("username", "alice")
	f.fields.Set("password", "wrong")
	for i := range 5 {
		if r := b.post(f.action, f.fields); r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	f.fields.Set("password", alicePW)
	if r := b.post(f.action, f.fields); r.status != http.StatusTooManyRequests {
		t.Errorf("sixth attempt with the shared throttle down: %d, want 429 from the local counters", r.status)
	}
}
