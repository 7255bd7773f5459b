package authserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/gateway"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// Reason codes of security events that are not OAuth error codes.
const (
	reasonBadCredentials = "bad-credentials"
	reasonThrottled      = "login-throttled"
	reasonAuthError      = "authentication-error"
	reasonSessionError   = "session-error"
	reasonUserDenied     = "user-denied"
	reasonNoScope        = "no-scope-granted"
	reasonPatientDenied  = "patient-not-allowed"
	reasonLaunchUser     = "launch-other-user"
	reasonLaunchUsed     = "launch-used"
	reasonAccountGone    = "account-unavailable"
	reasonUserRevoked    = "user-revoked"
	reasonLogout         = "logout"
	// reasonPurposeDenied: purpose_of_use named a purpose the user's roles do not carry.
	reasonPurposeDenied = "purpose-not-allowed"
	// reasonBreakGlassDenied: emergency access without a role that allows it or a reason.
	reasonBreakGlassDenied = "break-glass-not-allowed"
)

// Where a login happened, as the event's Detail.
const (
	loginAuthorize = "authorization sign-in"
	loginGrants    = "connected-apps sign-in"
	loginEHR       = "EHR launcher sign-in"
)

// maxAuditName bounds user-typed names (a failed login's username) kept in an event.
const maxAuditName = 256

// errAuditUnavailable is what a failed recording turns into where it must fail closed.
var errAuditUnavailable = errors.New("authserver: audit trail unavailable")

// auditEnabled reports whether events are recorded.
func (s *Server) auditEnabled() bool { return s.cfg.Audit != nil }

// RecordEvent records a security event of a request to the configured audit trail, filling in the
// request's client address, User-Agent and request id. It is a no-op without a recorder. The
// admin API records client registrations through it.
func (s *Server) RecordEvent(r *http.Request, e audit.Event) error {
	if !s.auditEnabled() {
		return nil
	}
	if r != nil {
		e.SourceIP = requestIP(r)
		e.UserAgent = r.UserAgent()
		e.RequestID = gateway.RequestID(r.Context())
		return s.recordCtx(r.Context(), e)
	}
	return s.recordCtx(context.Background(), e)
}

// recordCtx records e; a cancelled request must not lose its event, so the context's
// cancellation is dropped (its values are kept).
func (s *Server) recordCtx(ctx context.Context, e audit.Event) error {
	if !s.auditEnabled() {
		return nil
	}
	if e.SourceIP == "" {
		if ip := gateway.ClientIP(ctx); ip.IsValid() {
			e.SourceIP = ip.String()
		}
	}
	if e.RequestID == "" {
		e.RequestID = gateway.RequestID(ctx)
	}
	if err := s.cfg.Audit.Record(context.WithoutCancel(ctx), e); err != nil {
		return errors.Join(errAuditUnavailable, err)
	}
	return nil
}

// recordOrLog records e for r and logs a failure: for the events that do not fail closed.
func (s *Server) recordOrLog(r *http.Request, e audit.Event) {
	if err := s.RecordEvent(r, e); err != nil {
		s.log.ErrorContext(r.Context(), "audit event not recorded", "action", string(e.Action), "error", err)
	}
}

// requestIP is the client address the gateway resolved (trusted proxies applied), else the TCP
// peer.
func requestIP(r *http.Request) string {
	if ip := gateway.ClientIP(r.Context()); ip.IsValid() {
		return ip.String()
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// auditName cuts a user-typed name to a bounded length.
func auditName(s string) string {
	if len(s) > maxAuditName {
		return strings.ToValidUTF8(s[:maxAuditName], "")
	}
	return s
}

// patients is the launch patient as an event's Patients.
func patients(p string) []string {
	if p == "" {
		return nil
	}
	return []string{p}
}

// claimedClientID is the client id a request names (Basic user name, form client_id or the
// client assertion's sub), unauthenticated: used only where the client was not established.
func claimedClientID(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		if id, err := url.QueryUnescape(u); err == nil {
			return auditName(id)
		}
		return auditName(u)
	}
	if r.PostForm == nil {
		return ""
	}
	if id := r.PostForm.Get("client_id"); id != "" {
		return auditName(id)
	}
	// private_key_jwt without client_id: the assertion's sub names the client (unverified).
	if a := r.PostForm.Get("client_assertion"); a != "" {
		if t, err := jwt.ParseSigned(a, assertionAlgs); err == nil {
			var c struct {
				Sub string `json:"sub"`
			}
			if t.UnsafeClaimsWithoutVerification(&c) == nil {
				return auditName(c.Sub)
			}
		}
	}
	return ""
}

// loginEvent is a login attempt's event.
func loginEvent(where, clientID, username string, u *User, status int, outcome audit.Outcome, reasons ...string) audit.Event {
	e := audit.Event{Action: audit.ActionLogin, Status: status, Outcome: outcome, Reasons: reasons, Detail: where,
		ClientID: clientID, Subject: auditName(username)}
	if u != nil {
		e.Subject, e.FHIRUser, e.Roles = u.Username, u.FHIRUser, u.Roles
	}
	return e
}

// tokenAction is the event action of a token request's grant type.
func tokenAction(grant string) audit.Action {
	if grant == oauth.GrantRefreshToken {
		return audit.ActionTokenRefreshed
	}
	return audit.ActionTokenIssued
}

// onKeyRotated is the keys manager's rotation hook: every rotation becomes a key-rotated event.
// A rotation an admin request made carries that request's address and id; an automatic one
// (Maintain, possibly run inside some client's token request) is attributed to no request.
func (s *Server) onKeyRotated(ctx context.Context, rot keys.Rotation) {
	e := audit.Event{Action: audit.ActionKeyRotated, Outcome: audit.OutcomeSuccess, Reasons: []string{string(rot.Purpose)}, Detail: "new key " + rot.KID}
	if rot.Automatic {
		e.Detail = "automatic rotation, new key " + rot.KID
		ctx = context.Background()
	}
	if rot.Err != nil {
		e.Outcome, e.Detail = audit.OutcomeError, "rotation failed"
	}
	if err := s.recordCtx(ctx, e); err != nil {
		s.log.ErrorContext(ctx, "audit event not recorded", "action", string(e.Action), "error", err)
	}
}

// recordLoginFailure records a refused login: denied for a wrong username or password, error when
// the check itself failed.
func (s *Server) recordLoginFailure(r *http.Request, where, clientID, username string, err error) {
	if errors.Is(err, ErrBadCredentials) {
		s.recordOrLog(r, loginEvent(where, clientID, username, nil, http.StatusUnauthorized, audit.OutcomeDenied, reasonBadCredentials))
		return
	}
	s.recordOrLog(r, loginEvent(where, clientID, username, nil, http.StatusUnauthorized, audit.OutcomeError, reasonAuthError))
}

// statusWriter remembers the status of the response for the event.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
