package authserver

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/fhirgate/fhirgate/internal/config"
)

// throttle counts failed logins per account and per client IP in a fixed window. A key at its
// limit is refused until its window ends, without checking the password (so guessing costs the
// attacker time, not us argon2 work). State is per process; with Redis configured the shared
// throttle (Config.SharedThrottle) decides and this one is the fallback while Redis is down.
type throttle struct {
	cfg config.LoginThrottle
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures int
	start    time.Time
}

const throttleMaxEntries = 100_000

func newThrottle(cfg config.LoginThrottle, now func() time.Time) *throttle {
	return &throttle{cfg: cfg, now: now, entries: map[string]*throttleEntry{}}
}

func (t *throttle) keys(username, ip string) [2]string {
	return [2]string{"u\x00" + username, "i\x00" + ip}
}

// reserve is what the login handlers call before checking a password: it reports whether the
// attempt may proceed and, if so, already counts it as a failure, in one step. Checking and
// counting separately would let a burst of parallel guesses all pass the check before any of them
// is counted. succeed takes the count back for a correct password.
func (t *throttle) reserve(username, ip string) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.allowedLocked(username, ip, now) {
		return false
	}
	t.failLocked(username, ip, now)
	return true
}

// allowed reports whether a login attempt for username from ip may proceed.
func (t *throttle) allowed(username, ip string) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.allowedLocked(username, ip, now)
}

func (t *throttle) allowedLocked(username, ip string, now time.Time) bool {
	ks := t.keys(username, ip)
	limits := [2]int{t.cfg.MaxFailuresPerAccount, t.cfg.MaxFailuresPerIP}
	for i, k := range ks {
		e := t.entries[k]
		if e == nil || now.Sub(e.start) >= t.cfg.Window {
			continue
		}
		if limits[i] > 0 && e.failures >= limits[i] {
			return false
		}
	}
	return true
}

// fail records a failed attempt.
func (t *throttle) fail(username, ip string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(username, ip, now)
}

func (t *throttle) failLocked(username, ip string, now time.Time) {
	if len(t.entries) >= throttleMaxEntries {
		for k, e := range t.entries {
			if now.Sub(e.start) >= t.cfg.Window {
				delete(t.entries, k)
			}
		}
	}
	for _, k := range t.keys(username, ip) {
		e := t.entries[k]
		if e == nil || now.Sub(e.start) >= t.cfg.Window {
			if len(t.entries) >= throttleMaxEntries {
				continue // full of live entries: the other key still counts
			}
			e = &throttleEntry{start: now}
			t.entries[k] = e
		}
		e.failures++
	}
}

// succeed clears the account's failures and takes back the IP's count of the attempt reserve
// made (earlier failures from the IP stay counted).
func (t *throttle) succeed(username, ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, "u\x00"+username)
	if e := t.entries["i\x00"+ip]; e != nil && e.failures > 0 {
		e.failures--
	}
}

// clientIP is the peer address. Forwarded headers are not trusted here: the gateway in front of
// the server is responsible for rewriting RemoteAddr when it terminates a trusted proxy.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
