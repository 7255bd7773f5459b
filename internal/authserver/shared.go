package authserver

import (
	"context"
	"time"
)

// SharedThrottle counts failed logins across instances (sharedstate.LoginThrottle on Redis). An
// error means it could not answer; the server then uses its own per-instance counters.
type SharedThrottle interface {
	Reserve(ctx context.Context, username, ip string) (bool, error)
	Succeed(ctx context.Context, username, ip string) error
}

// AssertionJTIs records client-assertion jtis; a replay returns an error matching
// sqlstore.ErrOAuthExists. The store implements it; sharedstate.JTIs puts Redis in front.
type AssertionJTIs interface {
	UseAssertionJTI(ctx context.Context, key string, exp, now time.Time) error
}

// reserveLogin is the throttle check before a password is checked: the shared throttle when one
// is configured and answers, else this instance's.
func (s *Server) reserveLogin(ctx context.Context, username, ip string) bool {
	if t := s.cfg.SharedThrottle; t != nil {
		ok, err := t.Reserve(ctx, username, ip)
		if err == nil {
			return ok
		}
		s.log.WarnContext(ctx, "shared login throttle unavailable; this instance's counters apply", "error", err)
	}
	return s.throttle.reserve(username, ip)
}

// loginSucceeded takes back the reservation of a correct password, in the throttle that made it
// (both, when the shared one might have).
func (s *Server) loginSucceeded(ctx context.Context, username, ip string) {
	if t := s.cfg.SharedThrottle; t != nil {
		if err := t.Succeed(ctx, username, ip); err != nil {
			s.log.WarnContext(ctx, "shared login throttle unavailable", "error", err)
		}
	}
	s.throttle.succeed(username, ip)
}

// assertionJTIs is where client-assertion jtis are recorded.
func (s *Server) assertionJTIs() AssertionJTIs {
	if s.cfg.AssertionJTIs != nil {
		return s.cfg.AssertionJTIs
	}
	return s.db
}
