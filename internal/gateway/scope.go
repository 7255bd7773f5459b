package gateway

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
)

// Scope is the per-request state the gateway establishes, readable by every later handler.
type Scope struct {
	// RequestID identifies the request in logs and in the X-Request-ID response header.
	RequestID string
	// Group is the route group.
	Group string
	// ClientIP is the client address after trusted proxies; invalid when unknown.
	ClientIP netip.Addr
	// Secure reports that the client connected over HTTPS (here, or to a trusted proxy).
	Secure bool
}

type scopeKey struct{}

// ScopeFrom returns the request's Scope, or nil outside the gateway.
func ScopeFrom(ctx context.Context) *Scope {
	s, _ := ctx.Value(scopeKey{}).(*Scope)
	return s
}

// RequestID returns the request id, or "" outside the gateway.
func RequestID(ctx context.Context) string {
	if s := ScopeFrom(ctx); s != nil {
		return s.RequestID
	}
	return ""
}

// ClientIP returns the client IP after trusted proxies, invalid when unknown or outside the gateway.
func ClientIP(ctx context.Context) netip.Addr {
	if s := ScopeFrom(ctx); s != nil {
		return s.ClientIP
	}
	return netip.Addr{}
}

// requestID is step 1: it creates the Scope with the request id. An incoming X-Request-ID is
// kept only from a trusted proxy and only when it is short and plain; anyone else could use it
// to forge log lines or collide with another request's id.
func (g *Gateway) requestID(gr *group, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &Scope{Group: gr.name}
		if in := r.Header.Get("X-Request-Id"); in != "" && validRequestID(in) && g.proxies.trustedPeer(r) {
			s.RequestID = in
		} else {
			s.RequestID = newRequestID()
		}
		w.Header().Set("X-Request-Id", s.RequestID)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), scopeKey{}, s)))
	})
}

func validRequestID(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// recoverPanics is step 2: a panicking handler becomes a logged 500 in the group's format, if
// nothing was written yet. http.ErrAbortHandler keeps its meaning (abort the response).
func (g *Gateway) recoverPanics(gr *group, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &trackingWriter{ResponseWriter: w}
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if err, ok := rec.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(rec)
			}
			g.log.Error("panic serving request", "request_id", RequestID(r.Context()), "group", gr.name,
				"method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			if !rw.wrote {
				writeProblem(rw, r, gr, problem{status: http.StatusInternalServerError, fhirCode: "exception", oauthCode: "server_error", msg: "internal server error"})
			}
		}()
		next.ServeHTTP(rw, r)
	})
}

// trackingWriter records whether the response has started. It keeps Flush and Hijack reachable
// both by type assertion and through http.ResponseController.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *trackingWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *trackingWriter) Flush() {
	w.wrote = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.wrote = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
