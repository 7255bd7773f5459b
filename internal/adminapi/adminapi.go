package adminapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/keys"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// ErrNoToken means the API was configured without a usable bearer token.
var ErrNoToken = errors.New("adminapi: an admin token of at least 16 characters is required")

// Config is what New needs.
type Config struct {
	// Token is the bearer token every request must present.
	Token  string
	Server *authserver.Server
	Logger *slog.Logger
}

// API is the admin API.
type API struct {
	digest [32]byte
	srv    *authserver.Server
	log    *slog.Logger
}

// New returns the API; without a token it refuses to exist (deny by default).
func New(cfg Config) (*API, error) {
	if len(cfg.Token) < 16 {
		return nil, ErrNoToken
	}
	if cfg.Server == nil {
		return nil, errors.New("adminapi: a server is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &API{digest: sha256.Sum256([]byte(cfg.Token)), srv: cfg.Server, log: cfg.Logger.With("component", "adminapi")}, nil
}

// Register mounts the routes on mux (the admin listener's).
func (a *API) Register(mux *http.ServeMux) {
	mux.Handle("POST /admin/clients", a.auth(a.putClient))
	mux.Handle("GET /admin/clients", a.auth(a.listClients))
	mux.Handle("GET /admin/clients/{id}", a.auth(a.getClient))
	mux.Handle("DELETE /admin/clients/{id}", a.auth(a.deleteClient))
	mux.Handle("POST /admin/users", a.auth(a.putUser))
	mux.Handle("GET /admin/users", a.auth(a.listUsers))
	mux.Handle("GET /admin/users/{username}", a.auth(a.getUser))
	mux.Handle("DELETE /admin/users/{username}", a.auth(a.deleteUser))
	mux.Handle("POST /admin/launch", a.auth(a.launch))
	mux.Handle("GET /admin/keys", a.auth(a.listKeys))
	mux.Handle("POST /admin/keys/rotate", a.auth(a.rotateKey))
	mux.Handle("GET /admin/break-glass", a.auth(a.listBreakGlass))
	mux.Handle("POST /admin/break-glass/{id}/close", a.auth(a.closeBreakGlass))
}

// auth checks the bearer token: SHA-256 digests compared in constant time, so neither the value
// nor its length leaks through timing.
func (a *API) auth(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := r.Header.Get("Authorization")
		tok := ""
		if len(hdr) > 7 && strings.EqualFold(hdr[:7], "bearer ") {
			tok = strings.TrimSpace(hdr[7:])
		}
		d := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(d[:], a.digest[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate-admin"`)
			writeErr(w, http.StatusUnauthorized, "unauthorized", "A valid admin bearer token is required.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := h(w, r); err != nil {
			a.fail(w, r, err)
		}
	})
}

func writeErr(w http.ResponseWriter, status int, code, desc string) {
	oauth.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var oe *oauth.Error
	switch {
	case errors.As(err, &oe):
		writeErr(w, http.StatusBadRequest, oe.Code, oe.Description)
	case errors.Is(err, authserver.ErrNotFound):
		writeErr(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, authserver.ErrInvalidUser), errors.Is(err, authserver.ErrInvalidLaunch), errors.Is(err, errBadRequest):
		writeErr(w, http.StatusBadRequest, "invalid_request", err.Error())
	default:
		a.log.ErrorContext(r.Context(), "admin request failed", "path", r.URL.Path, "error", err)
		writeErr(w, http.StatusInternalServerError, "server_error", "internal error")
	}
}

var errBadRequest = errors.New("bad request")

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %w", errBadRequest, err)
	}
	return nil
}

// clientRequest is client metadata plus an optional secret.
type clientRequest struct {
	authserver.ClientMetadata
	ClientSecret string `json:"client_secret,omitempty"`
}

func (a *API) putClient(w http.ResponseWriter, r *http.Request) error {
	var req clientRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	secret := req.ClientSecret
	generated := false
	m := req.ClientMetadata
	if secret == "" && (m.TokenEndpointAuthMethod == oauth.AuthClientSecretBasic || m.TokenEndpointAuthMethod == oauth.AuthClientSecretPost) {
		secret, generated = authserver.NewSecret(), true
	}
	if err := a.srv.Clients().Put(r.Context(), m, secret, "admin"); err != nil {
		a.recordClient(r, m.ClientID, err)
		return err
	}
	c, err := a.srv.Clients().Get(r.Context(), m.ClientID)
	if err != nil {
		a.recordClient(r, m.ClientID, err)
		return err
	}
	a.log.InfoContext(r.Context(), "client registered", "client_id", m.ClientID, "auth_method", c.Metadata.TokenEndpointAuthMethod)
	a.recordClient(r, m.ClientID, nil)
	out := clientRequest{ClientMetadata: c.Metadata}
	if generated {
		out.ClientSecret = secret // shown once; only its digest is stored
	}
	oauth.WriteJSON(w, http.StatusCreated, out)
	return nil
}

// recordClient records a client registration through the admin API (client-registered): success,
// or denied with the error code (error for a server failure). A failure to record is logged.
func (a *API) recordClient(r *http.Request, clientID string, err error) {
	e := audit.Event{Action: audit.ActionClientRegistered, Outcome: audit.OutcomeSuccess, Status: http.StatusCreated,
		Reasons: []string{"admin"}, Detail: "admin API", ClientID: clientID}
	if err != nil {
		var oe *oauth.Error
		switch {
		case errors.As(err, &oe):
			e.Outcome, e.Status, e.Reasons = audit.OutcomeDenied, http.StatusBadRequest, []string{oe.Code, "admin"}
		case errors.Is(err, authserver.ErrNotFound):
			e.Outcome, e.Status, e.Reasons = audit.OutcomeError, http.StatusNotFound, []string{"not_found", "admin"}
		default:
			e.Outcome, e.Status, e.Reasons = audit.OutcomeError, http.StatusInternalServerError, []string{oauth.ServerError, "admin"}
		}
	}
	if rerr := a.srv.RecordEvent(r, e); rerr != nil {
		a.log.ErrorContext(r.Context(), "audit event not recorded", "action", string(e.Action), "error", rerr)
	}
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.srv.Clients().List(r.Context())
	if err != nil {
		return err
	}
	if cs == nil {
		cs = []authserver.ClientMetadata{}
	}
	oauth.WriteJSON(w, http.StatusOK, cs)
	return nil
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request) error {
	c, err := a.srv.Clients().Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, c.Metadata)
	return nil
}

func (a *API) deleteClient(w http.ResponseWriter, r *http.Request) error {
	if err := a.srv.Clients().Delete(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "client removed", "client_id", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) putUser(w http.ResponseWriter, r *http.Request) error {
	var spec authserver.UserSpec
	if err := decode(r, &spec); err != nil {
		return err
	}
	if err := a.srv.Users().Put(r.Context(), spec, "admin"); err != nil {
		return err
	}
	u, err := a.srv.Users().Get(r.Context(), spec.Username)
	if err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "user saved", "username", u.Username)
	oauth.WriteJSON(w, http.StatusCreated, u)
	return nil
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := a.srv.Users().List(r.Context())
	if err != nil {
		return err
	}
	if us == nil {
		us = []*authserver.User{}
	}
	oauth.WriteJSON(w, http.StatusOK, us)
	return nil
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) error {
	u, err := a.srv.Users().Get(r.Context(), r.PathValue("username"))
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := a.srv.Users().Delete(r.Context(), r.PathValue("username")); err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "user removed", "username", r.PathValue("username"))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) launch(w http.ResponseWriter, r *http.Request) error {
	var req authserver.LaunchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	l, err := a.srv.CreateLaunch(r.Context(), req)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusCreated, l)
	return nil
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) error {
	oauth.WriteJSON(w, http.StatusOK, a.srv.Keys().List())
	return nil
}

func (a *API) rotateKey(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Purpose keys.Purpose `json:"purpose"`
	}
	if err := decode(r, &req); err != nil {
		return err
	}
	switch req.Purpose {
	case keys.PurposeAccess, keys.PurposeID, keys.PurposeHMAC:
	default:
		return fmt.Errorf("%w: purpose must be access, id or hmac", errBadRequest)
	}
	kid, err := a.srv.Keys().Rotate(r.Context(), req.Purpose)
	if err != nil {
		return err
	}
	oauth.WriteJSON(w, http.StatusOK, map[string]string{"kid": kid, "purpose": string(req.Purpose)})
	return nil
}
