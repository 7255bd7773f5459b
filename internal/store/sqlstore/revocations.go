package sqlstore

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// revocationHook is told after every committed write that added access-token jtis to the
// revocation list, so that caches of "not revoked" answers (the shared-state revocation cache of
// several instances) can be dropped. Writes inside an OAuth transaction (BeginOAuthTx) tell it at
// CommitOAuthTx; a rolled-back transaction tells nothing.
type revocationHook struct {
	fn      atomic.Pointer[func()]
	pending sync.Map // *sql.Tx → struct{}: OAuth transactions that revoked something
}

// OnRevocation registers fn, called (synchronously, after the commit) whenever the revocation
// list grows. One function is kept; a later call replaces it, nil removes it.
func (s *Store) OnRevocation(fn func()) {
	if fn == nil {
		s.revHook.fn.Store(nil)
		return
	}
	s.revHook.fn.Store(&fn)
}

// revocationCommitted is called by every method that adds to the revocation list, after its
// write succeeded. Inside an OAuth transaction the call is deferred to the commit.
func (s *Store) revocationCommitted(ctx context.Context) {
	if tx, ok := ctx.Value(txKey{}).(*sql.Tx); ok {
		s.revHook.pending.Store(tx, struct{}{})
		return
	}
	s.notifyRevocation()
}

func (s *Store) notifyRevocation() {
	if fn := s.revHook.fn.Load(); fn != nil {
		(*fn)()
	}
}

// txEnded is called by CommitOAuthTx (committed true after a successful commit) and
// RollbackOAuthTx.
func (s *Store) txEnded(tx *sql.Tx, committed bool) {
	if _, ok := s.revHook.pending.LoadAndDelete(tx); ok && committed {
		s.notifyRevocation()
	}
}

// afterRevokingTx is deferred by the methods that may revoke in a transaction of their own: the
// returned function tells the hook once that transaction has ended. It tells it even when the
// transaction failed, which only costs the caches a refill.
func (s *Store) afterRevokingTx(ctx context.Context) func() {
	return func() { s.revocationCommitted(ctx) }
}
