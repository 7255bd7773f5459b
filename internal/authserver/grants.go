package authserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/web"
)

// The grants page is SMART's management_endpoint: a signed-in user sees which apps can access
// their data and revokes any of them (revocation at the user's direction takes effect at once:
// refresh tokens stop working and access tokens are on the revocation list).

func (s *Server) grantsPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, _, _, _, ok := s.sessionUser(r)
	if !ok {
		browser := s.browserCookie(w, r)
		s.pages.Render(w, http.StatusOK, "grants", web.GrantsData{CSRF: s.mac("grants-login", browser)})
		return
	}
	recs, err := s.db.ListActiveOAuthRequests(ctx, u.Username, s.now())
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "Error", "Your connected apps could not be listed.")
		return
	}
	data := web.GrantsData{LoggedIn: true, Username: u.Username, CSRF: s.mac("grants", mustCookie(r, cookieSession)),
		LogoutCSRF: s.mac("logout", mustCookie(r, cookieSession))}
	seen := map[string]bool{}
	for _, rec := range recs {
		if seen[rec.RequestID] {
			continue
		}
		seen[rec.RequestID] = true
		var sr storedRequest
		if err := json.Unmarshal(rec.Data, &sr); err != nil {
			continue
		}
		var sess Session
		_ = json.Unmarshal(sr.Session, &sess)
		data.Grants = append(data.Grants, web.Grant{ID: rec.RequestID, Client: rec.ClientID, Scope: strings.Join(sr.GrantedScope, " "),
			Patient: sess.Patient, Until: rec.ExpiresAt.Format(time.RFC1123)})
	}
	s.pages.Render(w, http.StatusOK, "grants", data)
}

func (s *Server) grantsLogin(w http.ResponseWriter, r *http.Request) {
	s.pageLogin(w, r, pageLogin{
		where: loginGrants, purpose: "grants-login", expired: "The form has expired. Reload the page.", next: PathGrants,
		render: func(status int, csrf, msg string) {
			s.pages.Render(w, status, "grants", web.GrantsData{CSRF: csrf, Error: msg})
		},
	})
}

func (s *Server) grantsRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	u, _, _, _, ok := s.sessionUser(r)
	if !ok {
		s.errorPage(w, http.StatusForbidden, "Forbidden", "Sign in first.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.mac("grants", mustCookie(r, cookieSession)))) != 1 {
		s.errorPage(w, http.StatusForbidden, "Forbidden", "The form has expired. Reload the page.")
		return
	}
	grant := r.PostFormValue("grant")
	// What the grant was (client, patient), read before it is revoked, for the event.
	var rec sqlstore.OAuthRequest
	var sess Session
	if recs, err := s.db.ListActiveOAuthRequests(ctx, u.Username, s.now()); err == nil {
		for _, x := range recs {
			if x.RequestID == grant {
				rec = x
				var sr storedRequest
				if json.Unmarshal(x.Data, &sr) == nil {
					_ = json.Unmarshal(sr.Session, &sess)
				}
				break
			}
		}
	}
	err := s.db.RevokeOAuthGrant(ctx, grant, u.Username)
	if err == nil {
		s.recordOrLog(r, audit.Event{Action: audit.ActionTokenRevoked, Outcome: audit.OutcomeSuccess, Status: http.StatusSeeOther,
			Reasons: []string{reasonUserRevoked}, ClientID: rec.ClientID, Subject: u.Username, FHIRUser: u.FHIRUser, Roles: u.Roles,
			Patients: patients(sess.Patient)})
	}
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		s.errorPage(w, http.StatusNotFound, "Not found", "That access was not found.")
		return
	}
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "Error", "The access could not be revoked.")
		return
	}
	s.log.InfoContext(ctx, "grant revoked by user", "username", u.Username)
	http.Redirect(w, r, PathGrants, http.StatusSeeOther)
}
