package authserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/web"
)

// LaunchRequest asks for an EHR launch context.
type LaunchRequest struct {
	ClientID    string              `json:"client_id"`
	Patient     string              `json:"patient,omitempty"`
	Encounter   string              `json:"encounter,omitempty"`
	FHIRContext []smart.ContextItem `json:"fhirContext,omitempty"`
	// User, when set, is the only user who may complete the launch.
	User string `json:"user,omitempty"`
}

// Launch is a created launch: the opaque value and the URL that starts the app.
type Launch struct {
	Launch    string `json:"launch"`
	LaunchURL string `json:"launch_url,omitempty"`
}

// ErrInvalidLaunch is wrapped by launch request errors.
var ErrInvalidLaunch = errors.New("authserver: invalid launch request")

// CreateLaunch makes a single-use, short-lived launch context bound to a client.
func (s *Server) CreateLaunch(ctx context.Context, req LaunchRequest) (Launch, error) {
	c, err := s.clients.Get(ctx, req.ClientID)
	if err != nil {
		return Launch{}, err
	}
	if !slices.Contains(c.Metadata.GrantTypes, "authorization_code") {
		return Launch{}, fmt.Errorf("%w: client %q does not use the authorization code grant", ErrInvalidLaunch, req.ClientID)
	}
	if req.Patient != "" && !smart.ValidID(req.Patient) {
		return Launch{}, fmt.Errorf("%w: patient must be a FHIR id", ErrInvalidLaunch)
	}
	if req.Encounter != "" && !smart.ValidID(req.Encounter) {
		return Launch{}, fmt.Errorf("%w: encounter must be a FHIR id", ErrInvalidLaunch)
	}
	for _, it := range req.FHIRContext {
		if it.Reference == "" && it.Canonical == "" && len(it.Identifier) == 0 {
			return Launch{}, fmt.Errorf("%w: every fhirContext item needs reference, canonical or identifier", ErrInvalidLaunch)
		}
		if it.Reference != "" {
			if _, _, ok := smart.SplitReference(it.Reference); !ok {
				return Launch{}, fmt.Errorf("%w: fhirContext reference %q must be Type/id", ErrInvalidLaunch, it.Reference)
			}
		}
	}
	if req.User != "" {
		if _, err := s.users.Get(ctx, req.User); err != nil {
			return Launch{}, fmt.Errorf("%w: unknown user", ErrInvalidLaunch)
		}
	}
	fc, err := json.Marshal(req.FHIRContext)
	if err != nil {
		return Launch{}, err
	}
	if req.FHIRContext == nil {
		fc = []byte("[]")
	}
	v := randomToken()
	err = s.db.CreateOAuthLaunch(ctx, sqlstore.OAuthLaunch{
		IDHash: sha256Hex(v), ClientID: c.GetID(), Patient: req.Patient, Encounter: req.Encounter,
		FHIRContext: fc, CreatedBy: req.User, ExpiresAt: s.now().Add(s.auth.LaunchTTL),
	})
	if err != nil {
		return Launch{}, err
	}
	l := Launch{Launch: v}
	if c.Metadata.LaunchURL != "" {
		u, err := url.Parse(c.Metadata.LaunchURL)
		if err == nil {
			q := u.Query()
			q.Set("iss", s.fhirBase)
			q.Set("launch", v)
			u.RawQuery = q.Encode()
			l.LaunchURL = u.String()
		}
	}
	return l, nil
}

// ehrPage is the EHR launcher: a clinician signs in, picks a patient and an app, and launches.
func (s *Server) ehrPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, _, _, _, ok := s.sessionUser(r)
	if !ok || !slices.Contains(u.Roles, RoleClinician) {
		browser := s.browserCookie(w, r)
		data := web.EHRData{CSRF: s.mac("ehr-login", browser)}
		if ok {
			data.Error = "Only clinicians can launch apps."
		}
		s.pages.Render(w, http.StatusOK, "ehr", data)
		return
	}
	sess := mustCookie(r, cookieSession)
	data := web.EHRData{LoggedIn: true, Username: u.Username, CSRF: s.mac("ehr-launch", sess), LogoutCSRF: s.mac("logout", sess), Query: r.URL.Query().Get("q")}
	if s.patients != nil {
		rows, err := s.patients.ListPatients(ctx, data.Query, 50)
		if err != nil {
			s.log.ErrorContext(ctx, "patient list failed", "error", err)
			data.Error = "The patient list is unavailable."
		}
		for _, p := range rows {
			data.Patients = append(data.Patients, web.PatientRow(p))
		}
	} else {
		data.Error = "No patient list is configured."
	}
	clients, err := s.clients.List(ctx)
	if err != nil {
		s.errorPage(w, http.StatusInternalServerError, "Error", "The app list is unavailable.")
		return
	}
	for _, c := range clients {
		if c.LaunchURL != "" && slices.Contains(c.GrantTypes, "authorization_code") {
			name := c.ClientName
			if name == "" {
				name = c.ClientID
			}
			data.Apps = append(data.Apps, web.App{ClientID: c.ClientID, Name: name})
		}
	}
	s.pages.Render(w, http.StatusOK, "ehr", data)
}

func (s *Server) ehrLogin(w http.ResponseWriter, r *http.Request) {
	s.pageLogin(w, r, pageLogin{
		where: loginEHR, purpose: "ehr-login", expired: "The form has expired. Reload the launcher.", next: PathEHR,
		render: func(status int, csrf, msg string) {
			s.pages.Render(w, status, "ehr", web.EHRData{CSRF: csrf, Error: msg})
		},
	})
}

func (s *Server) ehrLaunch(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	u, _, _, _, ok := s.sessionUser(r)
	if !ok || !slices.Contains(u.Roles, RoleClinician) {
		s.errorPage(w, http.StatusForbidden, "Forbidden", "Sign in as a clinician first.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.mac("ehr-launch", mustCookie(r, cookieSession)))) != 1 {
		s.errorPage(w, http.StatusForbidden, "Forbidden", "The form has expired. Reload the launcher.")
		return
	}
	l, err := s.CreateLaunch(ctx, LaunchRequest{ClientID: r.PostFormValue("client_id"), Patient: r.PostFormValue("patient"), Encounter: r.PostFormValue("encounter"), User: u.Username})
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Launch failed", "The app could not be launched with that patient.")
		return
	}
	if l.LaunchURL == "" {
		s.errorPage(w, http.StatusBadRequest, "Launch failed", "The app has no launch URL.")
		return
	}
	// The Location carries the launch value, a bearer secret: not to be cached.
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, l.LaunchURL, http.StatusSeeOther)
}
