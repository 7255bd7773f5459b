package config

import "time"

// Auth tunes the authorization server.
type Auth struct {
	// AccessTokenTTL is the life of an access token.
	AccessTokenTTL time.Duration `yaml:"access_token_ttl"`
}

// DefaultAuth returns the authorization server defaults.
func DefaultAuth() Auth {
	return Auth{AccessTokenTTL: time.Hour}
}

func (a *Auth) validate(v *Problems) {
	if a.AccessTokenTTL <= 0 {
		v.Add("auth.access_token_ttl", "must be positive")
	}
}
