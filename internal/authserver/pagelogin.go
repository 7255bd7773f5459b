package authserver

import (
	"crypto/subtle"
	"net/http"

	"github.com/fhirgate/fhirgate/internal/audit"
)

// pageLogin describes one of the sign-in forms outside an authorization request (the connected
// apps page, the EHR launcher).
type pageLogin struct {
	// where names the page in audit events.
	where string
	// purpose binds the form's CSRF token to this page.
	purpose string
	// expired is shown when the CSRF token does not match.
	expired string
	// next is where a signed-in user goes.
	next string
	// render shows the form again with an error.
	render func(status int, csrf, msg string)
}

// pageLogin handles the POST of such a form: CSRF bound to the browser, the throttle reserved
// before the password is checked (so parallel guesses count), the session started, every outcome
// audited.
func (s *Server) pageLogin(w http.ResponseWriter, r *http.Request, p pageLogin) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	browser := mustCookie(r, cookieBrowser)
	if browser == "" || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.mac(p.purpose, browser))) != 1 {
		s.errorPage(w, http.StatusForbidden, "Forbidden", p.expired)
		return
	}
	csrf := s.mac(p.purpose, browser)
	username, pw, ip := r.PostFormValue("username"), r.PostFormValue("password"), clientIP(r)
	if !s.reserveLogin(ctx, username, ip) {
		s.recordOrLog(r, loginEvent(p.where, "", username, nil, http.StatusTooManyRequests, audit.OutcomeDenied, reasonThrottled))
		w.Header().Set("Retry-After", "900")
		p.render(http.StatusTooManyRequests, csrf, "Too many failed attempts. Try again later.")
		return
	}
	u, err := s.users.Authenticate(ctx, username, pw)
	if err != nil {
		s.recordLoginFailure(r, p.where, "", username, err)
		p.render(http.StatusUnauthorized, csrf, "Wrong username or password.")
		return
	}
	s.loginSucceeded(ctx, username, ip)
	if _, _, _, err := s.startSession(w, r, u.Username); err != nil {
		s.recordOrLog(r, loginEvent(p.where, "", username, u, http.StatusInternalServerError, audit.OutcomeError, reasonSessionError))
		s.errorPage(w, http.StatusInternalServerError, "Error", "The session could not be started.")
		return
	}
	s.recordOrLog(r, loginEvent(p.where, "", username, u, http.StatusSeeOther, audit.OutcomeSuccess))
	http.Redirect(w, r, p.next, http.StatusSeeOther)
}
