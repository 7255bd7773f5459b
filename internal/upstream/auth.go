package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Auth is how fhirgate authenticates to the upstream.
type Auth struct {
	// Mode is none, header or client_credentials.
	Mode string
	// HeaderName and HeaderValue are the static header of mode header (Authorization: Basic
	// ..., X-API-Key: ...). The value comes from an environment variable and is never logged.
	HeaderName, HeaderValue string
	// TokenURL, ClientID, ClientSecret and Scopes are the OAuth 2.0 client_credentials grant
	// of mode client_credentials (RFC 6749 section 4.4); tokens are cached until they expire.
	TokenURL, ClientID, ClientSecret string
	Scopes                           []string
}

// The authentication modes.
const (
	AuthNone              = "none"
	AuthHeader            = "header"
	AuthClientCredentials = "client_credentials"
)

// NewClient returns the HTTP client that carries auth to the upstream, over base (a default
// transport with sane timeouts when nil).
func NewClient(auth Auth, base http.RoundTripper) (*http.Client, error) {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		t.ResponseHeaderTimeout = 0 // bounded per interaction by Options.Timeout
		t.TLSHandshakeTimeout = 10 * time.Second
		base = t
	}
	switch auth.Mode {
	case "", AuthNone:
		return &http.Client{Transport: base}, nil
	case AuthHeader:
		name := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(auth.HeaderName))
		if name == "" || auth.HeaderValue == "" {
			return nil, errors.New("upstream: header authentication needs a header name and a value")
		}
		return &http.Client{Transport: &headerTransport{name: name, value: auth.HeaderValue, next: base}}, nil
	case AuthClientCredentials:
		if auth.TokenURL == "" || auth.ClientID == "" || auth.ClientSecret == "" {
			return nil, errors.New("upstream: client_credentials needs a token URL, a client id and a secret")
		}
		cc := clientcredentials.Config{ClientID: auth.ClientID, ClientSecret: auth.ClientSecret, TokenURL: auth.TokenURL, Scopes: auth.Scopes}
		// The token endpoint is called with the same transport (its own timeout applies).
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: base, Timeout: 30 * time.Second})
		return &http.Client{Transport: &oauth2.Transport{Source: cc.TokenSource(ctx), Base: base}}, nil
	default:
		return nil, fmt.Errorf("upstream: unknown authentication mode %q", auth.Mode)
	}
}

// headerTransport sets one header on every request.
type headerTransport struct {
	name, value string
	next        http.RoundTripper
}

func (h *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set(h.name, h.value)
	return h.next.RoundTrip(r)
}
