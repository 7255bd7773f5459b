package authserver

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/fhirgate/fhirgate/internal/oauth"
)

// capabilities advertised in smart-configuration (SMART-CONFORMANCE 1.3, 1.4): the union ONC
// (g)(10) requires, plus what fhirgate implements beyond it (permission-online).
var capabilities = []string{
	"launch-ehr", "launch-standalone", "authorize-post",
	"client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
	"sso-openid-connect", "context-banner", "context-style",
	"context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
	"permission-offline", "permission-online", "permission-patient", "permission-user",
	"permission-v1", "permission-v2",
}

func (s *Server) scopesSupported() []string {
	return []string{
		"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
		"offline_access", "online_access",
		"patient/*.cruds", "patient/*.rs", "patient/*.read", "patient/*.write", "patient/*.*",
		"user/*.cruds", "user/*.rs", "user/*.read", "user/*.write", "user/*.*",
		"system/*.cruds", "system/*.rs", "system/*.read", "system/*.write", "system/*.*",
	}
}

// SMARTConfiguration is the .well-known/smart-configuration document.
func (s *Server) SMARTConfiguration() map[string]any {
	doc := map[string]any{
		"issuer":                                           s.issuer,
		"jwks_uri":                                         s.issuer + PathJWKS,
		"authorization_endpoint":                           s.authzURL,
		"token_endpoint":                                   s.tokenURL,
		"introspection_endpoint":                           s.issuer + PathIntrospect,
		"revocation_endpoint":                              s.issuer + PathRevoke,
		"userinfo_endpoint":                                s.issuer + PathUserinfo,
		"management_endpoint":                              s.issuer + PathGrants,
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            authMethodsSupported,
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"scopes_supported":                                 s.scopesSupported(),
		"capabilities":                                     capabilities,
	}
	if s.auth.Registration.Enabled {
		doc["registration_endpoint"] = s.issuer + PathRegister
	}
	s.addMutualTLS(doc)
	s.addTokenExchange(doc)
	return doc
}

// OpenIDConfiguration is the OpenID Connect discovery document.
func (s *Server) OpenIDConfiguration() map[string]any {
	doc := map[string]any{
		"issuer":                                           s.issuer,
		"authorization_endpoint":                           s.authzURL,
		"token_endpoint":                                   s.tokenURL,
		"userinfo_endpoint":                                s.issuer + PathUserinfo,
		"jwks_uri":                                         s.issuer + PathJWKS,
		"introspection_endpoint":                           s.issuer + PathIntrospect,
		"revocation_endpoint":                              s.issuer + PathRevoke,
		"response_types_supported":                         []string{"code"},
		"response_modes_supported":                         []string{"query"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{"RS256"},
		"token_endpoint_auth_methods_supported":            authMethodsSupported,
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS384", "ES384"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"scopes_supported":                                 s.scopesSupported(),
		"claims_supported":                                 []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "fhirUser", "azp"},
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  false,
	}
	if s.auth.Registration.Enabled {
		doc["registration_endpoint"] = s.issuer + PathRegister
	}
	s.addMutualTLS(doc)
	s.addTokenExchange(doc)
	return doc
}

// CapabilitySecurity returns the CapabilityStatement rest.security element for /fhir/metadata:
// the SMART-on-FHIR service coding and the oauth-uris extension (SMART v1 discovery), with the
// same URLs as smart-configuration.
func (s *Server) CapabilitySecurity() map[string]any {
	ext := []map[string]any{
		{"url": "authorize", "valueUri": s.authzURL},
		{"url": "token", "valueUri": s.tokenURL},
		{"url": "introspect", "valueUri": s.issuer + PathIntrospect},
		{"url": "revoke", "valueUri": s.issuer + PathRevoke},
		{"url": "manage", "valueUri": s.issuer + PathGrants},
	}
	if s.auth.Registration.Enabled {
		ext = append(ext, map[string]any{"url": "register", "valueUri": s.issuer + PathRegister})
	}
	return map[string]any{
		"cors": true,
		"service": []any{map[string]any{
			"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}},
			"text":   "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
		}},
		"extension": []any{map[string]any{
			"url":       "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
			"extension": ext,
		}},
	}
}

func writePublicJSON(w http.ResponseWriter, v any, maxAge string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cache-Control", "public, max-age="+maxAge)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) smartConfiguration(w http.ResponseWriter, r *http.Request) {
	writePublicJSON(w, s.SMARTConfiguration(), "300")
}

func (s *Server) openIDConfiguration(w http.ResponseWriter, r *http.Request) {
	writePublicJSON(w, s.OpenIDConfiguration(), "300")
}

func (s *Server) jwksHandler(w http.ResponseWriter, r *http.Request) {
	writePublicJSON(w, s.keys.JWKS(), "300")
}

// style is the smart_style_url document (SMART "context-style").
func (s *Server) style(w http.ResponseWriter, r *http.Request) {
	writePublicJSON(w, map[string]any{
		"color_background": "#edeae3", "color_error": "#9e2d2d", "color_highlight": "#69b5ce",
		"color_modal_backdrop": "", "color_success": "#498e49", "color_text": "#303030",
		"dim_border_radius": "6px", "dim_font_size": "13px", "dim_spacing_size": "20px",
		"font_family_body":    "Georgia, Times, 'Times New Roman', serif",
		"font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif;",
	}, "3600")
}

// preflight answers CORS preflight requests of the public JSON endpoints.
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// authMethodsSupported are the client authentication methods every deployment accepts;
// tls_client_auth is added where the listener asks for client certificates.
var authMethodsSupported = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}

// addTokenExchange advertises the break-glass token exchange (RFC 8693) when some role allows
// emergency access, the condition under which the token endpoint accepts the grant.
func (s *Server) addTokenExchange(doc map[string]any) {
	if !s.cfg.Security.breakGlassEnabled() {
		return
	}
	if g, ok := doc["grant_types_supported"].([]string); ok {
		doc["grant_types_supported"] = append(slices.Clone(g), oauth.GrantTokenExchange)
	}
}

// addMutualTLS advertises RFC 8705 in a discovery document when client certificates reach the
// server: tls_client_auth and certificate-bound access tokens (section 3.3).
func (s *Server) addMutualTLS(doc map[string]any) {
	if !s.cfg.MutualTLS {
		return
	}
	doc["token_endpoint_auth_methods_supported"] = append(slices.Clone(authMethodsSupported), oauth.AuthTLSClient)
	doc["tls_client_certificate_bound_access_tokens"] = true
}
