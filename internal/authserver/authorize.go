package authserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ory/fosite"
	fositejwt "github.com/ory/fosite/token/jwt"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/web"
)

// Cookie names. The browser cookie binds in-flight authorizations to the browser that started
// them; the session cookie is the login session.
const (
	cookieBrowser = "fhirgate_browser"
	cookieSession = "fhirgate_session"
)

// singleParams may appear at most once in an authorization request (RFC 6749 3.1).
var singleParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
	"code_challenge_method", "aud", "resource", "launch", "nonce", "prompt", "max_age"}

// interaction is the server-side state of an authorization in progress.
type interaction struct {
	Form       url.Values `json:"form"`
	ClientID   string     `json:"client_id"`
	ClientName string     `json:"client_name"`
	// Requested is the requested scope already narrowed to the client's registration.
	Requested string `json:"requested"`
	// LaunchHash identifies the EHR launch, when there is one.
	LaunchHash string        `json:"launch_hash,omitempty"`
	Launch     *launchRecord `json:"launch,omitempty"`
	CSRF       string        `json:"csrf"`
	Username   string        `json:"username,omitempty"`
	SID        string        `json:"sid,omitempty"`
	AuthTime   time.Time     `json:"auth_time,omitzero"`
	SessionEnd time.Time     `json:"session_end,omitzero"`
	Patient    string        `json:"patient,omitempty"`
	// PatientChosen is set once the patient question is settled (picked, implied or not needed).
	PatientChosen bool `json:"patient_chosen,omitempty"`
	// Created is when the authorization request arrived (OpenID Connect prompt and max_age).
	Created time.Time `json:"created"`
}

type launchRecord struct {
	Patient     string              `json:"patient,omitempty"`
	Encounter   string              `json:"encounter,omitempty"`
	FHIRContext []smart.ContextItem `json:"fhir_context,omitempty"`
	CreatedBy   string              `json:"created_by,omitempty"`
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) errorPage(w http.ResponseWriter, status int, title, msg string) {
	s.pages.Render(w, status, "error", web.ErrorData{Title: title, Message: msg})
}

// authorize is the authorization endpoint (GET and POST, SMART App Launch "authorize-post").
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The authorization request could not be read.")
		return
	}
	form := r.Form
	// 1. Client and redirect URI first: until both are known good, errors are shown here and
	// never redirected (RFC 6749 4.1.2.1; no open redirector).
	if len(form["client_id"]) != 1 || len(form["redirect_uri"]) > 1 {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The request must name exactly one client_id and at most one redirect_uri.")
		return
	}
	c, err := s.clients.Get(ctx, form.Get("client_id"))
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.ErrorContext(ctx, "client lookup failed", "error", err)
		}
		s.errorPage(w, http.StatusBadRequest, "Unknown application", "The application that sent you here is not registered.")
		return
	}
	ru := form.Get("redirect_uri")
	if ru == "" || !slices.Contains(c.Metadata.RedirectURIs, ru) {
		s.errorPage(w, http.StatusBadRequest, "Invalid redirect", "The application's redirect_uri is missing or not registered.")
		return
	}
	// From here on errors go back to the app.
	redirectErr := func(code, desc string) {
		s.redirectError(w, ru, form.Get("state"), code, desc)
	}
	for _, p := range singleParams {
		if len(form[p]) > 1 {
			redirectErr(oauth.InvalidRequest, "Parameter "+p+" is repeated.")
			return
		}
	}
	if form.Get("request") != "" || form.Get("request_uri") != "" {
		redirectErr("request_not_supported", "Request objects are not supported.")
		return
	}
	if form.Get("response_type") != oauth.ResponseTypeCode {
		redirectErr(oauth.UnsupportedResponseType, "Only response_type=code is supported.")
		return
	}
	if !slices.Contains(c.Metadata.GrantTypes, oauth.GrantAuthorizationCode) {
		redirectErr(oauth.UnauthorizedClient, "This client may not use the authorization code grant.")
		return
	}
	if slices.Contains(strings.Fields(form.Get("prompt")), "none") {
		// Every authorization here needs the user's consent on a page.
		redirectErr("interaction_required", "prompt=none is not supported: this server always asks for consent.")
		return
	}
	if form.Get("state") == "" {
		redirectErr(oauth.InvalidRequest, "The state parameter is required.")
		return
	}
	// SMART: aud must be this server's FHIR base URL (resource is accepted as a synonym).
	aud := form.Get("aud")
	if aud == "" {
		aud = form.Get("resource")
	}
	if aud != s.fhirBase {
		redirectErr(oauth.InvalidRequest, "The aud parameter must be this server's FHIR base URL.")
		return
	}
	// PKCE S256 for every client; plain and a missing method (which RFC 7636 reads as plain) are refused.
	if err := checkChallenge(form.Get("code_challenge"), form.Get("code_challenge_method")); err != "" {
		redirectErr(oauth.InvalidRequest, err)
		return
	}
	requested, dropped := smart.ParseScopes(form.Get("scope"))
	if len(dropped) > 0 {
		s.log.InfoContext(ctx, "dropped unknown scopes", "client_id", c.GetID(), "dropped", dropped)
	}
	narrowed := requested.Intersect(c.Scopes())
	if len(narrowed) == 0 {
		redirectErr(oauth.InvalidScope, "None of the requested scopes is available to this client.")
		return
	}
	ia := &interaction{ClientID: c.GetID(), ClientName: c.Metadata.ClientName, CSRF: randomToken(), Requested: narrowed.Echo(), Created: s.now().UTC().Truncate(time.Second)}
	if ia.ClientName == "" {
		ia.ClientName = c.GetID()
	}
	// EHR launch: the launch value must be live and issued for this client.
	launch := form.Get("launch")
	switch {
	case launch != "":
		if !narrowed.Has(smart.KindLaunch) {
			redirectErr(oauth.InvalidRequest, "A launch parameter needs the launch scope.")
			return
		}
		l, err := s.db.GetOAuthLaunch(ctx, sha256Hex(launch), c.GetID(), s.now())
		if err != nil {
			if !errors.Is(err, sqlstore.ErrOAuthNotFound) {
				s.log.ErrorContext(ctx, "launch lookup failed", "error", err)
			}
			redirectErr(oauth.InvalidRequest, "The launch parameter is unknown, expired, used, or for another app.")
			return
		}
		ia.LaunchHash = l.IDHash
		ia.Launch = &launchRecord{Patient: l.Patient, Encounter: l.Encounter, CreatedBy: l.CreatedBy}
		if err := json.Unmarshal(l.FHIRContext, &ia.Launch.FHIRContext); err != nil {
			redirectErr(oauth.ServerError, "The launch context is damaged.")
			return
		}
	case narrowed.Has(smart.KindLaunch):
		redirectErr(oauth.InvalidRequest, "The launch scope needs a launch parameter (EHR launch).")
		return
	}
	// Hand the request to fosite now too, so that what it would refuse is refused before the
	// user is asked anything. The form keeps the narrowed scope.
	ia.Form = url.Values{}
	for k, v := range form {
		ia.Form[k] = slices.Clone(v)
	}
	ia.Form.Set("scope", ia.Requested)
	// The launch value is a bearer secret: only its hash is kept.
	ia.Form.Del("launch")
	if _, err := s.fositeAuthorizeRequest(ctx, ia.Form); err != nil {
		code, desc, _ := fositeErr(err)
		if code == "error" {
			code = oauth.ServerError
		}
		redirectErr(code, desc)
		return
	}
	browser := s.browserCookie(w, r)
	id := randomToken()
	if err := s.saveInteraction(ctx, id, browser, ia); err != nil {
		s.log.ErrorContext(ctx, "save interaction failed", "error", err)
		redirectErr(oauth.ServerError, "The request could not be stored.")
		return
	}
	http.Redirect(w, r, PathInteraction+id, http.StatusSeeOther)
}

// checkChallenge validates the PKCE parameters; it returns a description of the problem or "".
func checkChallenge(challenge, method string) string {
	if challenge == "" {
		return "code_challenge is required (PKCE S256)."
	}
	if method != "S256" {
		return "code_challenge_method must be S256; plain is not allowed."
	}
	// BASE64URL(SHA256(verifier)) without padding is exactly 43 characters.
	if len(challenge) != 43 {
		return "code_challenge must be a base64url SHA-256 digest (43 characters)."
	}
	for i := 0; i < len(challenge); i++ {
		ch := challenge[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return "code_challenge must be base64url."
		}
	}
	return ""
}

// redirectError sends an error back to a validated redirect URI, with state echoed.
func (s *Server) redirectError(w http.ResponseWriter, redirectURI, state, code, desc string) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid redirect", "The redirect URI cannot be used.")
		return
	}
	q := u.Query()
	q.Set("error", code)
	if desc != "" {
		q.Set("error_description", desc)
	}
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", u.String())
	w.WriteHeader(http.StatusFound)
}

// fositeAuthorizeRequest lets fosite parse and validate an authorization request from a form.
func (s *Server) fositeAuthorizeRequest(ctx context.Context, form url.Values) (fosite.AuthorizeRequester, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.authzURL+"?"+form.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return s.provider.NewAuthorizeRequest(ctx, req)
}

func (s *Server) secureCookies() bool { return strings.HasPrefix(s.issuer, "https://") }

// browserCookie returns the browser-binding cookie value, setting a new one if absent.
func (s *Server) browserCookie(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(cookieBrowser); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return c.Value
	}
	v := randomToken()
	http.SetCookie(w, &http.Cookie{Name: cookieBrowser, Value: v, Path: "/", HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
	return v
}

func (s *Server) saveInteraction(ctx context.Context, id, browser string, ia *interaction) error {
	data, err := json.Marshal(ia)
	if err != nil {
		return err
	}
	return s.db.PutInteraction(ctx, id, sha256Hex(browser), data, s.now().Add(s.auth.InteractionTTL))
}

// loadInteraction returns the interaction if it is live and belongs to this browser.
func (s *Server) loadInteraction(r *http.Request, id string) (*interaction, error) {
	c, err := r.Cookie(cookieBrowser)
	if err != nil {
		return nil, errors.New("no browser cookie")
	}
	hash, data, err := s.db.GetInteraction(r.Context(), id, s.now())
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(hash), []byte(sha256Hex(c.Value))) != 1 {
		return nil, errors.New("interaction belongs to another browser")
	}
	ia := &interaction{}
	if err := json.Unmarshal(data, ia); err != nil {
		return nil, err
	}
	return ia, nil
}

// sessionUser returns the user of a live login session cookie.
func (s *Server) sessionUser(r *http.Request) (u *User, sid string, authTime, end time.Time, ok bool) {
	c, err := r.Cookie(cookieSession)
	if err != nil || len(c.Value) < 32 || len(c.Value) > 64 {
		return nil, "", time.Time{}, time.Time{}, false
	}
	name, created, err := s.db.GetBrowserSession(r.Context(), sha256Hex(c.Value), s.now())
	if err != nil {
		return nil, "", time.Time{}, time.Time{}, false
	}
	u, err = s.users.Get(r.Context(), name)
	if err != nil {
		return nil, "", time.Time{}, time.Time{}, false
	}
	return u, sidOf(c.Value), created, created.Add(s.auth.SessionTTL), true
}

// sidOf is the OpenID sid of a session: derived from, but not revealing, the cookie value.
func sidOf(cookie string) string { return sha256Hex("sid\x00" + cookie)[:32] }

// startSession logs username in: a fresh session id (no fixation), cookie and stored hash.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, username string) (sid string, authTime, end time.Time, err error) {
	if old, err := r.Cookie(cookieSession); err == nil {
		_ = s.db.DeleteBrowserSession(r.Context(), sha256Hex(old.Value))
	}
	v := randomToken()
	now := s.now().UTC().Truncate(time.Second)
	end = now.Add(s.auth.SessionTTL)
	if err := s.db.CreateBrowserSession(r.Context(), sha256Hex(v), username, now, end); err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: v, Path: "/", HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode, Expires: end})
	return sidOf(v), now, end, nil
}

// logout ends the login session.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieSession); err == nil {
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.mac("logout", c.Value))) != 1 {
			s.errorPage(w, http.StatusForbidden, "Forbidden", "The form has expired. Go back and try again.")
			return
		}
		username, _, err := s.db.GetBrowserSession(r.Context(), sha256Hex(c.Value), s.now())
		if err == nil {
			s.endOnlineGrants(r, c.Value, username)
		}
		_ = s.db.DeleteBrowserSession(r.Context(), sha256Hex(c.Value))
		if err == nil {
			e := audit.Event{Action: audit.ActionLogout, Outcome: audit.OutcomeSuccess, Status: http.StatusOK, Subject: username}
			if u, uerr := s.users.Get(r.Context(), username); uerr == nil {
				e.FHIRUser, e.Roles = u.FHIRUser, u.Roles
			}
			s.recordOrLog(r, e)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: cookieSession, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secureCookies(), SameSite: http.SameSiteLaxMode})
	s.errorPage(w, http.StatusOK, "Signed out", "You are signed out.")
}

// endOnlineGrants revokes the online_access grants made in the login session cookie names: such
// a grant lasts only while the user stays signed in (SMART online_access), so signing out ends
// its refresh token and access tokens at once.
func (s *Server) endOnlineGrants(r *http.Request, cookie, username string) {
	ctx := r.Context()
	sid := sidOf(cookie)
	recs, err := s.db.ListActiveOAuthRequests(ctx, username, s.now())
	if err != nil {
		s.log.ErrorContext(ctx, "listing grants at logout failed", "error", err)
		return
	}
	done := map[string]bool{}
	for _, rec := range recs {
		if done[rec.RequestID] {
			continue
		}
		var sr storedRequest
		if json.Unmarshal(rec.Data, &sr) != nil {
			continue
		}
		var sess Session
		if json.Unmarshal(sr.Session, &sess) != nil || sess.SID != sid || sess.OnlineUntil.IsZero() {
			continue
		}
		done[rec.RequestID] = true
		if err := s.db.RevokeOAuthGrant(ctx, rec.RequestID, username); err != nil {
			if !errors.Is(err, sqlstore.ErrOAuthNotFound) {
				s.log.ErrorContext(ctx, "revoking an online_access grant at logout failed", "error", err)
			}
			continue
		}
		s.recordOrLog(r, audit.Event{Action: audit.ActionTokenRevoked, Outcome: audit.OutcomeSuccess, Status: http.StatusOK,
			Reasons: []string{reasonLogout}, ClientID: rec.ClientID, Subject: username, FHIRUser: sess.FHIRUser, Roles: sess.Roles,
			Patients: patients(sess.Patient)})
	}
}

// interactionPage shows the current step of an authorization: login, patient picker or consent.
func (s *Server) interactionPage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ia, err := s.loadInteraction(r, id)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Request expired", "This sign-in request has expired or was opened in another browser. Start again from the application.")
		return
	}
	if ia.Username == "" {
		if u, sid, at, end, ok := s.sessionUser(r); ok && s.ssoAllowed(ia, at) {
			ia.Username, ia.SID, ia.AuthTime, ia.SessionEnd = u.Username, sid, at, end
			if err := s.saveInteraction(r.Context(), id, mustCookie(r, cookieBrowser), ia); err != nil {
				s.errorPage(w, http.StatusInternalServerError, "Error", "The request could not be stored.")
				return
			}
		}
	}
	s.showStep(w, r, id, ia, "")
}

// ssoAllowed reports whether an existing login session may answer this request: not with
// prompt=login, and not when it is older than max_age (OpenID Connect Core 3.1.2.1).
func (s *Server) ssoAllowed(ia *interaction, authTime time.Time) bool {
	if slices.Contains(strings.Fields(ia.Form.Get("prompt")), "login") {
		return false
	}
	if v := ia.Form.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		// max_age=0 means "authenticate now", like prompt=login.
		if err != nil || n <= 0 || ia.Created.Sub(authTime) > time.Duration(n)*time.Second {
			return false
		}
	}
	return true
}

func mustCookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

// showStep renders the page for where ia stands.
func (s *Server) showStep(w http.ResponseWriter, r *http.Request, id string, ia *interaction, msg string) {
	ctx := r.Context()
	base := PathInteraction + id
	if ia.Username == "" {
		s.pages.Render(w, http.StatusOK, "login", web.LoginData{Action: base + "/login", CSRF: ia.CSRF, ClientName: ia.ClientName, Error: msg})
		return
	}
	u, err := s.users.Get(ctx, ia.Username)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Account unavailable", "Your account is no longer available.")
		return
	}
	if !ia.PatientChosen {
		needs, implied := s.patientNeed(u, ia)
		switch {
		case !needs:
			ia.PatientChosen = true
		case implied != "":
			ia.Patient, ia.PatientChosen = implied, true
		case slices.Contains(u.Roles, RoleClinician) && s.patients != nil:
			q := r.URL.Query().Get("q")
			rows, err := s.patients.ListPatients(ctx, q, 50)
			if err != nil {
				s.log.ErrorContext(ctx, "patient list failed", "error", err)
				msg = "The patient list is unavailable."
			}
			data := web.PickerData{Action: base + "/patient", Search: base, CSRF: ia.CSRF, Query: q, Error: msg}
			for _, p := range rows {
				data.Patients = append(data.Patients, web.PatientRow(p))
			}
			s.pages.Render(w, http.StatusOK, "picker", data)
			return
		default:
			// No way to establish a patient: patient-context scopes will be withheld.
			ia.PatientChosen = true
		}
		if err := s.saveInteraction(ctx, id, mustCookie(r, cookieBrowser), ia); err != nil {
			s.errorPage(w, http.StatusInternalServerError, "Error", "The request could not be stored.")
			return
		}
	}
	offered := s.offeredScopes(u, ia)
	data := web.ConsentData{Action: base + "/consent", CSRF: ia.CSRF, ClientName: ia.ClientName, Username: u.Username, Patient: ia.Patient}
	for _, sc := range offered {
		data.Scopes = append(data.Scopes, web.ScopeOption{Value: sc.Echo(), Label: describeScope(sc), Checked: true})
		for _, sub := range categorySubScopes(sc) {
			data.Scopes = append(data.Scopes, web.ScopeOption{Value: sub.String(), Label: describeScope(sub), Sub: true})
		}
	}
	s.pages.Render(w, http.StatusOK, "consent", data)
}

// patientNeed reports whether the request needs a patient in context and, if the answer follows
// without asking, which: the EHR launch's patient, or a patient user's own record.
func (s *Server) patientNeed(u *User, ia *interaction) (needs bool, implied string) {
	req, _ := smart.ParseScopes(ia.Requested)
	if ia.Launch != nil && ia.Launch.Patient != "" {
		return true, ia.Launch.Patient
	}
	needs = req.Has(smart.KindLaunchPatient) || req.HasContext(smart.ContextPatient)
	if needs && u.IsPatient() {
		return true, strings.TrimPrefix(u.FHIRUser, "Patient/")
	}
	return needs, ""
}

// offeredScopes is what the user is asked to approve: requested (already within the client's
// registration) ∩ what the user's roles may delegate, without patient-context scopes when no
// patient is in context, and without user/ scopes when the user has no FHIR identity.
func (s *Server) offeredScopes(u *User, ia *interaction) smart.Scopes {
	req, _ := smart.ParseScopes(ia.Requested)
	out := req.Intersect(s.allowedScopes(u))
	var keep smart.Scopes
	for _, sc := range out {
		switch {
		case sc.Kind == smart.KindLaunchPatient && ia.Patient == "":
		case sc.Kind == smart.KindLaunchEncounter && (ia.Launch == nil || ia.Launch.Encounter == ""):
		case sc.Kind == smart.KindLaunch && ia.Launch == nil:
		case sc.IsResource() && sc.Context == smart.ContextPatient && ia.Patient == "":
		case sc.IsResource() && sc.Context == smart.ContextUser && u.FHIRUser == "":
		case sc.IsResource() && sc.Context == smart.ContextSystem:
		default:
			keep = append(keep, sc)
		}
	}
	return keep
}

// Categories offered as sub-scopes (ONC HTI-1 / US Core granular scopes).
var categoryOptions = map[string][]string{
	"Observation": {
		"http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
		"http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
		"http://terminology.hl7.org/CodeSystem/observation-category|social-history",
		"http://terminology.hl7.org/CodeSystem/observation-category|survey",
		"http://terminology.hl7.org/CodeSystem/observation-category|exam",
		"http://terminology.hl7.org/CodeSystem/observation-category|imaging",
		"http://terminology.hl7.org/CodeSystem/observation-category|procedure",
		"http://terminology.hl7.org/CodeSystem/observation-category|therapy",
		"http://terminology.hl7.org/CodeSystem/observation-category|activity",
		"http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
		"http://hl7.org/fhir/us/core/CodeSystem/us-core-category|clinical-test",
	},
	"Condition": {
		"http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
		"http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
		"http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
	},
}

// categorySubScopes offers category-restricted alternatives for a resource-level Observation or
// Condition scope (or a wildcard covering them) that is not itself granular.
func categorySubScopes(sc smart.Scope) []smart.Scope {
	if !sc.IsResource() || sc.Granular() || sc.Context == smart.ContextSystem {
		return nil
	}
	var types []string
	switch sc.Type {
	case smart.AllTypes:
		types = []string{"Condition", "Observation"}
	case "Condition", "Observation":
		types = []string{sc.Type}
	default:
		return nil
	}
	var out []smart.Scope
	for _, t := range types {
		for _, cat := range categoryOptions[t] {
			out = append(out, smart.Scope{Kind: smart.KindResource, Context: sc.Context, Type: t, Perms: sc.Perms,
				Constraints: []smart.Constraint{{Param: "category", Value: cat}}, Syntax: smart.SyntaxV2})
		}
	}
	return out
}

func describeScope(sc smart.Scope) string {
	switch sc.Kind {
	case smart.KindOpenID:
		return "Know who you are"
	case smart.KindFHIRUser:
		return "Know your FHIR identity"
	case smart.KindProfile:
		return "Read your profile"
	case smart.KindLaunch:
		return "Open in the context of the current EHR session"
	case smart.KindLaunchPatient:
		return "Know the selected patient"
	case smart.KindLaunchEncounter:
		return "Know the current encounter"
	case smart.KindOfflineAccess:
		return "Keep access after you sign out"
	case smart.KindOnlineAccess:
		return "Keep access while you are signed in"
	}
	who := map[smart.Context]string{smart.ContextPatient: "the patient's", smart.ContextUser: "your", smart.ContextSystem: "all"}[sc.Context]
	what := sc.Type
	if what == smart.AllTypes {
		what = "all record types"
	}
	var verbs []string
	for _, p := range []struct {
		perm smart.Perms
		word string
	}{{smart.PermCreate, "create"}, {smart.PermRead, "read"}, {smart.PermUpdate, "update"}, {smart.PermDelete, "delete"}, {smart.PermSearch, "search"}} {
		if sc.Perms.Has(p.perm) {
			verbs = append(verbs, p.word)
		}
	}
	d := strings.Join(verbs, ", ") + " " + who + " " + what
	if sc.Granular() {
		var cs []string
		for _, c := range sc.Constraints {
			v := c.Value
			if i := strings.LastIndexByte(v, '|'); i >= 0 {
				v = v[i+1:]
			}
			cs = append(cs, v)
		}
		d += " (only " + strings.Join(cs, ", ") + ")"
	}
	return d
}

// interactionSubmit handles the login, patient and consent forms.
func (s *Server) interactionSubmit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, step := r.PathValue("id"), r.PathValue("step")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The form could not be read.")
		return
	}
	ia, err := s.loadInteraction(r, id)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Request expired", "This sign-in request has expired or was opened in another browser. Start again from the application.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(ia.CSRF)) != 1 {
		s.errorPage(w, http.StatusForbidden, "Forbidden", "The form has expired. Start again from the application.")
		return
	}
	browser := mustCookie(r, cookieBrowser)
	switch step {
	case "login":
		username, pw := r.PostForm.Get("username"), r.PostForm.Get("password")
		ip := clientIP(r)
		if !s.reserveLogin(ctx, username, ip) {
			s.log.WarnContext(ctx, "login throttled", "username", username, "ip", ip)
			s.recordOrLog(r, loginEvent(loginAuthorize, ia.ClientID, username, nil, http.StatusTooManyRequests, audit.OutcomeDenied, reasonThrottled))
			w.Header().Set("Retry-After", "900")
			s.pages.Render(w, http.StatusTooManyRequests, "login", web.LoginData{Action: PathInteraction + id + "/login", CSRF: ia.CSRF, ClientName: ia.ClientName, Username: username, Error: "Too many failed attempts. Try again later."})
			return
		}
		u, err := s.users.Authenticate(ctx, username, pw)
		if err != nil {
			s.recordLoginFailure(r, loginAuthorize, ia.ClientID, username, err)
			if !errors.Is(err, ErrBadCredentials) {
				s.log.ErrorContext(ctx, "authentication failed", "error", err)
			}
			s.pages.Render(w, http.StatusUnauthorized, "login", web.LoginData{Action: PathInteraction + id + "/login", CSRF: ia.CSRF, ClientName: ia.ClientName, Username: username, Error: "Wrong username or password."})
			return
		}
		s.loginSucceeded(ctx, username, ip)
		sid, at, end, err := s.startSession(w, r, u.Username)
		if err != nil {
			s.recordOrLog(r, loginEvent(loginAuthorize, ia.ClientID, username, u, http.StatusInternalServerError, audit.OutcomeError, reasonSessionError))
			s.errorPage(w, http.StatusInternalServerError, "Error", "The session could not be started.")
			return
		}
		s.recordOrLog(r, loginEvent(loginAuthorize, ia.ClientID, username, u, http.StatusSeeOther, audit.OutcomeSuccess))
		ia.Username, ia.SID, ia.AuthTime, ia.SessionEnd = u.Username, sid, at, end
		ia.CSRF = randomToken() // a new token after the privilege change
	case "patient":
		if ia.Username == "" || ia.PatientChosen {
			s.errorPage(w, http.StatusBadRequest, "Invalid step", "Start again from the application.")
			return
		}
		u, err := s.users.Get(ctx, ia.Username)
		if err != nil || !slices.Contains(u.Roles, RoleClinician) {
			s.errorPage(w, http.StatusForbidden, "Forbidden", "You cannot choose a patient.")
			return
		}
		p := r.PostForm.Get("patient")
		if !smart.ValidID(p) {
			s.showStep(w, r, id, ia, "Choose a patient.")
			return
		}
		ia.Patient, ia.PatientChosen = p, true
	case "consent":
		if ia.Username == "" || !ia.PatientChosen {
			s.errorPage(w, http.StatusBadRequest, "Invalid step", "Start again from the application.")
			return
		}
		if err := s.db.DeleteInteraction(ctx, id); err != nil {
			s.errorPage(w, http.StatusBadRequest, "Request expired", "This request was already answered.")
			return
		}
		s.finish(w, r, ia, r.PostForm.Get("decision") == "allow", r.PostForm["scope"])
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err := s.saveInteraction(ctx, id, browser, ia); err != nil {
		s.errorPage(w, http.StatusInternalServerError, "Error", "The request could not be stored.")
		return
	}
	http.Redirect(w, r, PathInteraction+id, http.StatusSeeOther)
}

// finish completes an authorization: the consent decision, the granted scopes, the launch context
// and the authorization code, all through fosite.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, ia *interaction, allow bool, chosen []string) {
	ctx := r.Context()
	// The decision is recorded once the answer is written: consent-given when a code was issued,
	// consent-withheld when the user declined or the server refused what was consented.
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	ev := audit.Event{Action: audit.ActionConsentWithheld, Outcome: audit.OutcomeDenied, Detail: "refused by the server",
		ClientID: ia.ClientID, Subject: ia.Username, Patients: patients(ia.Patient)}
	defer func() {
		ev.Status = sw.status
		s.recordOrLog(r, ev)
	}()
	ar, err := s.fositeAuthorizeRequest(ctx, ia.Form)
	if err != nil {
		code, _, _ := fositeErr(err)
		ev.Reasons = []string{code}
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	if !allow {
		ev.Reasons, ev.Detail = []string{oauth.AccessDenied, reasonUserDenied}, "declined by the user"
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The user denied the request."))
		return
	}
	u, err := s.users.Get(ctx, ia.Username)
	if err != nil {
		ev.Reasons = []string{oauth.AccessDenied, reasonAccountGone}
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The account is no longer available."))
		return
	}
	ev.FHIRUser, ev.Roles = u.FHIRUser, u.Roles
	if u.IsPatient() && ia.Patient != "" && ia.Patient != strings.TrimPrefix(u.FHIRUser, "Patient/") {
		// A patient user may only ever put their own record in context.
		ev.Reasons = []string{oauth.AccessDenied, reasonPatientDenied}
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The launch is for another patient."))
		return
	}
	if ia.Patient != "" && !slices.Contains(u.Roles, RoleClinician) && (!u.IsPatient() || ia.Patient != strings.TrimPrefix(u.FHIRUser, "Patient/")) {
		// Only clinicians may act on another patient's record; anyone else (a patient-role user
		// whose fhir_user is a RelatedPerson or Person, a user without a role) may at most put
		// their own Patient record in context.
		ev.Reasons = []string{oauth.AccessDenied, reasonPatientDenied}
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("You cannot open another patient's record."))
		return
	}
	if ia.Launch != nil && ia.Launch.CreatedBy != "" && ia.Launch.CreatedBy != u.Username {
		ev.Reasons = []string{oauth.AccessDenied, reasonLaunchUser}
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The EHR launch belongs to another user."))
		return
	}
	purposes, btg, perr := s.requestedPurposes(u, ia.Form)
	if perr != nil {
		ev.Reasons = []string{oauth.AccessDenied, reasonPurposeDenied}
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("The purpose of use is not allowed for this user."))
		return
	}
	bgReason := strings.TrimSpace(ia.Form.Get(ParamBreakGlassReason))
	if btg && (!s.cfg.Security.mayBreakGlass(u.Roles) || u.IsPatient() || bgReason == "" || len(bgReason) > maxBreakGlassReason) {
		// Emergency access needs a role that allows it and a written reason.
		ev.Reasons = []string{oauth.AccessDenied, reasonBreakGlassDenied}
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("Emergency access needs a role that allows it and a written reason (break_glass_reason)."))
		return
	}
	// granted = what the user ticked, each within what was offered (so a tampered form cannot add
	// anything): requested ∩ client ∩ user's role ∩ consent.
	offered := s.offeredScopes(u, ia)
	var ticked smart.Scopes
	for _, v := range chosen {
		if sc, err := smart.ParseScope(v); err == nil {
			ticked = append(ticked, sc)
		}
	}
	granted := ticked.Intersect(offered)
	if ia.Launch != nil && !granted.Has(smart.KindLaunch) {
		granted = nil // an EHR launch without the launch scope granted has no context to deliver
	}
	if len(granted) == 0 {
		ev.Reasons, ev.Detail = []string{oauth.AccessDenied, reasonNoScope}, "no permission granted by the user"
		s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrAccessDenied.WithHint("No permission was granted."))
		return
	}
	if ia.LaunchHash != "" {
		if _, err := s.db.ConsumeOAuthLaunch(ctx, ia.LaunchHash, ia.ClientID, s.now()); err != nil {
			ev.Reasons = []string{oauth.InvalidRequest, reasonLaunchUsed}
			s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrInvalidRequest.WithHint("The launch was already used or expired."))
			return
		}
	}
	if btg {
		// A break-glass grant is short-lived: no refresh token.
		var keep smart.Scopes
		for _, sc := range granted {
			if sc.Kind != smart.KindOfflineAccess && sc.Kind != smart.KindOnlineAccess {
				keep = append(keep, sc)
			}
		}
		granted = keep
	}
	for _, sc := range granted {
		ar.GrantScope(sc.Echo())
	}
	ar.GrantAudience(s.fhirBase)
	sess := &Session{
		Username: u.Username, ClientID: ia.ClientID, FHIRUser: u.FHIRUser, Roles: u.Roles,
		SID: ia.SID, AuthTime: ia.AuthTime,
	}
	if granted.HasContext(smart.ContextPatient) || granted.Has(smart.KindLaunchPatient) || ia.Launch != nil {
		sess.Patient = ia.Patient
	}
	if ia.Launch != nil {
		if granted.Has(smart.KindLaunchEncounter) || ia.Launch.Encounter != "" {
			sess.Encounter = ia.Launch.Encounter
		}
		sess.FHIRContext = ia.Launch.FHIRContext
		banner := true
		sess.NeedPatientBanner = &banner
		sess.StyleURL = s.issuer + PathStyle
	}
	if granted.Has(smart.KindOnlineAccess) && !granted.Has(smart.KindOfflineAccess) {
		sess.OnlineUntil = ia.SessionEnd
	}
	sess.OIDC = &fositejwt.IDTokenClaims{Subject: u.Username, AuthTime: ia.AuthTime, RequestedAt: ia.Created}
	sess.PurposeOfUse = purposes
	if btg {
		if err := s.startBreakGlass(r, sess, bgReason, ""); err != nil {
			ev.Reasons, ev.Detail, ev.Outcome = []string{oauth.ServerError}, "the break-glass review item could not be stored", audit.OutcomeError
			s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithHint("Emergency access could not be recorded."))
			return
		}
	}
	if s.cfg.Consents != nil && u.IsPatient() && sess.Patient == strings.TrimPrefix(u.FHIRUser, "Patient/") && sess.Patient != "" {
		// The patient's authorisation of the app is recorded as a Consent they can see and
		// manage (patient/Consent.cruds).
		var scopes []string
		for _, sc := range granted {
			scopes = append(scopes, sc.String())
		}
		if err := s.cfg.Consents.RecordAppConsent(ctx, sess.Patient, ia.ClientID, ia.ClientName, scopes, s.now()); err != nil {
			s.log.ErrorContext(ctx, "the app authorisation could not be recorded as a Consent", "client_id", ia.ClientID, "error", err)
			ev.Reasons, ev.Detail, ev.Outcome = []string{oauth.ServerError}, "the Consent could not be recorded", audit.OutcomeError
			s.provider.WriteAuthorizeError(ctx, w, ar, fosite.ErrServerError.WithHint("The authorisation could not be recorded."))
			return
		}
	}
	ev.Action, ev.Patients, ev.Detail = audit.ActionConsentGiven, patients(sess.Patient), ""
	resp, err := s.provider.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		s.log.InfoContext(ctx, "authorization refused", "client_id", ia.ClientID, "error", err)
		code, _, status := fositeErr(err)
		ev.Reasons, ev.Detail = []string{code}, "the authorization code could not be issued"
		if status >= 500 {
			ev.Outcome = audit.OutcomeError
		}
		s.provider.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	ev.Outcome = audit.OutcomeSuccess
	s.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}
