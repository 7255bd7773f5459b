package authserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

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
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidRequest, Description: "Use POST.", Status: http.StatusMethodNotAllowed})
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
			oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidToken, Description: "A valid initial access token is required.", Status: http.StatusUnauthorized})
			return
		}
	}
	var m ClientMetadata
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&m); err != nil {
		oauth.WriteError(w, r, &oauth.Error{Code: oauth.InvalidClientMetadata, Description: "The body must be a JSON object of client metadata."})
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
		oauth.WriteError(w, r, err)
		return
	}
	secret := ""
	if m.TokenEndpointAuthMethod == oauth.AuthClientSecretBasic || m.TokenEndpointAuthMethod == oauth.AuthClientSecretPost {
		secret = NewSecret()
	}
	if err := s.clients.Put(ctx, m, secret, "dynamic"); err != nil {
		var oe *oauth.Error
		if errors.As(err, &oe) {
			oauth.WriteError(w, r, oe)
			return
		}
		s.log.ErrorContext(ctx, "dynamic registration failed", "error", err)
		oauth.WriteError(w, r, err)
		return
	}
	stored, err := s.clients.Get(ctx, m.ClientID)
	if err != nil {
		oauth.WriteError(w, r, err)
		return
	}
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
