package authserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/oauth"
)

// register is RFC 7591 dynamic client registration. It is off unless auth.registration.enabled;
// with an initial access token configured, requests must present it as a Bearer token. Clients
// choose their metadata but not their client_id (it is generated); secrets are generated for
// the client_secret_* methods and returned once.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !s.auth.Registration.Enabled {
		http.NotFound(w, r)
		return
	}
	ev := audit.Event{Action: audit.ActionClientRegistered, Detail: "dynamic registration"}
	// Refusals are recorded with their error code; the client id is generated only on success.
	fail := func(err error) {
		oe := oauth.ErrorFrom(err)
		ev.Status, ev.Reasons = oe.StatusCode(), []string{oe.Code}
		ev.Outcome = audit.OutcomeDenied
		if ev.Status >= 500 {
			ev.Outcome = audit.OutcomeError
		}
		s.recordOrLog(r, ev)
		oauth.WriteError(w, r, err)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		fail(&oauth.Error{Code: oauth.InvalidRequest, Description: "Use POST.", Status: http.StatusMethodNotAllowed})
		return
	}
	if want := s.cfg.InitialAccessToken; want != "" {
		h := r.Header.Get("Authorization")
		got := ""
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			got = strings.TrimSpace(h[7:])
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate", error="invalid_token"`)
			fail(&oauth.Error{Code: oauth.InvalidToken, Description: "A valid initial access token is required.", Status: http.StatusUnauthorized})
			return
		}
	}
	var m ClientMetadata
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&m); err != nil {
		fail(&oauth.Error{Code: oauth.InvalidClientMetadata, Description: "The body must be a JSON object of client metadata."})
		return
	}
	m.ClientID = "dyn-" + randomToken()[:24]
	m.ClientIDIssuedAt = 0
	m = normalizeMetadata(m)
	if err := ValidateDynamicMetadata(m); err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			s.log.InfoContext(ctx, "dynamic registration refused", "error", oe.Description)
		}
		fail(err)
		return
	}
	secret := ""
	if m.TokenEndpointAuthMethod == oauth.AuthClientSecretBasic || m.TokenEndpointAuthMethod == oauth.AuthClientSecretPost {
		secret = NewSecret()
	}
	if err := s.clients.Put(ctx, m, secret, "dynamic"); err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			fail(oe)
			return
		}
		s.log.ErrorContext(ctx, "dynamic registration failed", "error", err)
		fail(err)
		return
	}
	stored, err := s.clients.Get(ctx, m.ClientID)
	if err != nil {
		fail(err)
		return
	}
	ev.ClientID, ev.Status, ev.Outcome = m.ClientID, http.StatusCreated, audit.OutcomeSuccess
	ev.Reasons = []string{m.TokenEndpointAuthMethod}
	s.recordOrLog(r, ev)
	s.log.InfoContext(ctx, "client registered dynamically", "client_id", m.ClientID, "auth_method", m.TokenEndpointAuthMethod)
	out := map[string]any{}
	data, _ := json.Marshal(stored.Metadata)
	_ = json.Unmarshal(data, &out)
	if secret != "" {
		out["client_secret"] = secret
		out["client_secret_expires_at"] = 0
	}
	oauth.WriteJSON(w, http.StatusCreated, out)
}
