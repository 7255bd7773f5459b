package config

import "time"

// Auth tunes the authorization server. Zero durations take the defaults of DefaultAuth.
type Auth struct {
	// AccessTokenTTL is the life of an access token from an authorization_code or refresh grant
	// (SMART: at most an hour is recommended).
	AccessTokenTTL time.Duration `yaml:"access_token_ttl"`
	// BackendAccessTokenTTL is the life of a client_credentials access token (SMART Backend
	// Services: "SHOULD NOT exceed five minutes").
	BackendAccessTokenTTL time.Duration `yaml:"backend_access_token_ttl"`
	// CodeTTL is the life of an authorization code (about a minute).
	CodeTTL time.Duration `yaml:"code_ttl"`
	// RefreshTokenTTL is the life of an offline_access refresh token; each refresh starts a new
	// period. ONC (g)(10) expects at least three months.
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`
	// IDTokenTTL is the life of an ID token.
	IDTokenTTL time.Duration `yaml:"id_token_ttl"`
	// SessionTTL is the life of a browser login session; online_access grants end with it.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// InteractionTTL bounds the time a user has to finish login, patient selection and consent.
	InteractionTTL time.Duration `yaml:"interaction_ttl"`
	// LaunchTTL is the life of an EHR launch context.
	LaunchTTL time.Duration `yaml:"launch_ttl"`
	// KeyRotation rotates the token signing keys when they are this old; 0 disables it.
	KeyRotation time.Duration `yaml:"key_rotation"`
	// KeyOverlap keeps rotated-out keys published this long; it must exceed the longest token life.
	KeyOverlap time.Duration `yaml:"key_overlap"`
	// KeyEncryptionKeyEnv names the environment variable with the 32-byte key (base64 or hex)
	// that encrypts the signing keys at rest. When the variable is unset the key is a file in
	// data_dir protected by its permissions (0600).
	KeyEncryptionKeyEnv string `yaml:"key_encryption_key_env"`
	// Registration configures RFC 7591 dynamic client registration.
	Registration Registration `yaml:"registration"`
	// Login throttles password guessing.
	Login LoginThrottle `yaml:"login"`
}

// Registration configures dynamic client registration; off by default.
type Registration struct {
	Enabled bool `yaml:"enabled"`
	// InitialAccessTokenEnv names the environment variable holding the bearer token a registration
	// request must present; empty means open registration (only sensible on closed networks).
	InitialAccessTokenEnv string `yaml:"initial_access_token_env"`
}

// LoginThrottle limits failed logins per account and per client IP within Window.
type LoginThrottle struct {
	MaxFailuresPerAccount int           `yaml:"max_failures_per_account"`
	MaxFailuresPerIP      int           `yaml:"max_failures_per_ip"`
	Window                time.Duration `yaml:"window"`
}

// DefaultAuth returns the authorization server defaults.
func DefaultAuth() Auth {
	return Auth{
		AccessTokenTTL:        time.Hour,
		BackendAccessTokenTTL: 5 * time.Minute,
		CodeTTL:               time.Minute,
		RefreshTokenTTL:       90 * 24 * time.Hour,
		IDTokenTTL:            time.Hour,
		SessionTTL:            12 * time.Hour,
		InteractionTTL:        15 * time.Minute,
		LaunchTTL:             5 * time.Minute,
		KeyRotation:           90 * 24 * time.Hour,
		KeyOverlap:            48 * time.Hour,
		KeyEncryptionKeyEnv:   "FHIRGATE_KEY_ENCRYPTION_KEY",
		Login:                 LoginThrottle{MaxFailuresPerAccount: 5, MaxFailuresPerIP: 50, Window: 15 * time.Minute},
	}
}

// WithDefaults fills every zero field from DefaultAuth.
func (a Auth) WithDefaults() Auth {
	d := DefaultAuth()
	fill := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&a.AccessTokenTTL, d.AccessTokenTTL)
	fill(&a.BackendAccessTokenTTL, d.BackendAccessTokenTTL)
	fill(&a.CodeTTL, d.CodeTTL)
	fill(&a.RefreshTokenTTL, d.RefreshTokenTTL)
	fill(&a.IDTokenTTL, d.IDTokenTTL)
	fill(&a.SessionTTL, d.SessionTTL)
	fill(&a.InteractionTTL, d.InteractionTTL)
	fill(&a.LaunchTTL, d.LaunchTTL)
	fill(&a.KeyOverlap, d.KeyOverlap)
	fill(&a.Login.Window, d.Login.Window)
	if a.KeyEncryptionKeyEnv == "" {
		a.KeyEncryptionKeyEnv = d.KeyEncryptionKeyEnv
	}
	if a.Login.MaxFailuresPerAccount == 0 {
		a.Login.MaxFailuresPerAccount = d.Login.MaxFailuresPerAccount
	}
	if a.Login.MaxFailuresPerIP == 0 {
		a.Login.MaxFailuresPerIP = d.Login.MaxFailuresPerIP
	}
	return a
}

func (a *Auth) validate(v *Problems) {
	pos := func(key string, d time.Duration) {
		if d < 0 {
			v.Add(key, "must not be negative")
		}
	}
	pos("auth.access_token_ttl", a.AccessTokenTTL)
	pos("auth.backend_access_token_ttl", a.BackendAccessTokenTTL)
	pos("auth.code_ttl", a.CodeTTL)
	pos("auth.refresh_token_ttl", a.RefreshTokenTTL)
	pos("auth.id_token_ttl", a.IDTokenTTL)
	pos("auth.session_ttl", a.SessionTTL)
	pos("auth.interaction_ttl", a.InteractionTTL)
	pos("auth.launch_ttl", a.LaunchTTL)
	pos("auth.key_rotation", a.KeyRotation)
	pos("auth.key_overlap", a.KeyOverlap)
	w := a.WithDefaults()
	if w.AccessTokenTTL > 24*time.Hour {
		v.Add("auth.access_token_ttl", "must be at most 24h (SMART recommends at most 1h)")
	}
	if w.BackendAccessTokenTTL > time.Hour {
		v.Add("auth.backend_access_token_ttl", "must be at most 1h (SMART Backend Services recommends 5m)")
	}
	if w.CodeTTL > 10*time.Minute {
		v.Add("auth.code_ttl", "must be at most 10m (RFC 6749 4.1.2)")
	}
	if w.KeyOverlap < w.AccessTokenTTL || w.KeyOverlap < w.IDTokenTTL {
		v.Add("auth.key_overlap", "must be at least the access and ID token lifetimes")
	}
	if a.Login.MaxFailuresPerAccount < 0 || a.Login.MaxFailuresPerIP < 0 {
		v.Add("auth.login", "failure limits must not be negative")
	}
}
