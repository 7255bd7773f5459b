package keys

import (
	"context"
	"time"
)

// publicKeysFreshness bounds the age of the copy PublicKeys answers from. Several instances
// share the keys in the store: when one rotates, the others must verify its new tokens at once,
// not after their next reload. The verifier asks PublicKeys again when it meets an unknown kid
// (rate limited there), and PublicKeys rereads the store first when its copy is older than this.
const publicKeysFreshness = time.Second

// reloadIfOlder rereads the store when the in-memory copy is older than age. A failure keeps the
// copy (logged): verification goes on with the keys known.
func (m *Manager) reloadIfOlder(ctx context.Context, age time.Duration) {
	m.mu.RLock()
	stale := m.opts.Now().Sub(m.loaded) >= age
	m.mu.RUnlock()
	if !stale {
		return
	}
	if err := m.load(ctx); err != nil {
		m.opts.Logger.WarnContext(ctx, "keys: reload failed; verifying with the keys already loaded", "error", err)
	}
}

// freshCurrent rereads the store and returns the current key of p.
func (m *Manager) freshCurrent(ctx context.Context, p Purpose) (*Key, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	return m.Current(p)
}

// ReloadIfOlder rereads the store when the in-memory copy is older than age, so that a secret or
// key another instance rotated is known here without waiting for Maintain. Callers use it when
// something this process made cannot be checked (a code or refresh token whose HMAC does not
// verify); age rate-limits the rereads that forged values can cause.
func (m *Manager) ReloadIfOlder(ctx context.Context, age time.Duration) {
	m.reloadIfOlder(ctx, age)
}
