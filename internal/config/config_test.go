package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaultIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	if cfg.FHIRBase() != "http://localhost:8080/fhir" || cfg.Issuer() != "http://localhost:8080" {
		t.Errorf("FHIRBase = %q, Issuer = %q", cfg.FHIRBase(), cfg.Issuer())
	}
}

func TestValidateNamesEveryBadKey(t *testing.T) {
	cfg := Default()
	cfg.BaseURL = "ftp://x"
	cfg.Addr = "nonsense"
	cfg.Storage.Driver = "mysql"
	cfg.Log.Level = "loud"
	cfg.FHIR.MaxCount = 1
	cfg.Clients = []Client{
		{ClientID: "a", TokenEndpointAuthMethod: "client_secret_basic", ClientSecret: "short"},
		{ClientID: "a", RedirectURIs: []string{"/relative"}},
		{ClientID: "k", TokenEndpointAuthMethod: "private_key_jwt"},
		{ClientID: "m", TokenEndpointAuthMethod: "tls_client_auth", ClientSecret: "a-secret-of-16-chars"},
	}
	cfg.Users = []User{{Username: "u", FHIRUser: "Observation/1", Password: "x"}}
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate() = %v, want ErrInvalid", err)
	}
	for _, key := range []string{"base_url", "addr:", "storage.driver", "log.level", "fhir.max_count",
		"clients[0].client_secret", "clients[1].client_id", "clients[1].redirect_uris[0]", "clients[2].jwks",
		"clients[3].client_secret", "clients[3].tls_client_auth_subject_dn", "users[0].fhir_user"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() does not name %s:\n%v", key, err)
		}
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	cfg := Default()
	err := Parse(strings.NewReader("base_url: http://x\nbsae_url: typo\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "bsae_url") {
		t.Fatalf("Parse with a misspelt key = %v, want an error naming it", err)
	}
}

func TestParseFile(t *testing.T) {
	cfg := Default()
	yaml := `
base_url: https://fhir.example.org
storage: {driver: postgres, dsn: "postgres://u:secret@db/x"}
clients:
  - client_id: my-app
    redirect_uris: [http://localhost:3000/callback]
    scope: "openid patient/*.rs"
users:
  - username: alice
    password: wonderland
    fhir_user: Patient/example-alice
    roles: [patient]
`
	if err := Parse(strings.NewReader(yaml), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Storage.DSN.Value() != "postgres://u:secret@db/x" || cfg.Clients[0].ClientID != "my-app" || cfg.Users[0].Roles[0] != "patient" {
		t.Errorf("parsed %+v", cfg)
	}
	if s := cfg.Storage.DSN.String(); strings.Contains(s, "secret") {
		t.Errorf("Secret.String() = %q leaks the value", s)
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{
		"FHIRGATE_BASE_URL":                  "https://env.example",
		"FHIRGATE_STORAGE_MAX_OPEN_CONNS":    "7",
		"FHIRGATE_STORAGE_CONN_MAX_LIFETIME": "90s",
		"FHIRGATE_DEMO":                      "true",
		"FHIRGATE_FHIR_MAX_COUNT":            "250",
	}
	cfg := Default()
	if err := ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if cfg.BaseURL != "https://env.example" || cfg.Storage.MaxOpenConns != 7 || cfg.Storage.ConnMaxLifetime != 90*time.Second || !cfg.Demo || cfg.FHIR.MaxCount != 250 {
		t.Errorf("ApplyEnv gave %+v", cfg)
	}
	bad := map[string]string{"FHIRGATE_STORAGE_MAX_OPEN_CONNS": "many"}
	err := ApplyEnv(&cfg, func(k string) (string, bool) { v, ok := bad[k]; return v, ok })
	if err == nil || !strings.Contains(err.Error(), "storage.max_open_conns") {
		t.Errorf("ApplyEnv with a bad integer = %v, want an error naming storage.max_open_conns", err)
	}
}

func TestEnvKeysCoverScalars(t *testing.T) {
	found := map[string]string{}
	for _, kv := range EnvKeys() {
		found[kv[0]] = kv[1]
	}
	for key, env := range map[string]string{"storage.dsn": "FHIRGATE_STORAGE_DSN", "base_url": "FHIRGATE_BASE_URL", "fhir.default_count": "FHIRGATE_FHIR_DEFAULT_COUNT"} {
		if found[key] != env {
			t.Errorf("EnvKeys()[%s] = %q, want %s", key, found[key], env)
		}
	}
}

func TestPolicyValidation(t *testing.T) {
	cfg := Default()
	cfg.Policy.UserAccess = "everyone"
	cfg.Policy.MaxUserPatients = 0
	cfg.Policy.Shadow.Mode = "enforce"
	err := cfg.Validate()
	for _, key := range []string{"policy.user_access", "policy.max_user_patients", "policy.shadow.mode"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() = %v, want a problem naming %s", err, key)
		}
	}
	cfg = Default()
	cfg.Policy.UserAccess = "care-team"
	cfg.Policy.Shadow.Mode = "audit-only"
	cfg.Policy.Shadow.UserAccess = "compartment"
	if err := cfg.Validate(); err != nil {
		t.Errorf("care-team with a compartment shadow: %v", err)
	}
}

func TestRedactionValidation(t *testing.T) {
	ok := LabelRedaction{Labels: []string{"R", "HIV"}, Elements: map[string][]string{"Observation": {"value[x]", "component.value[x]", "note"}}}
	tests := []struct {
		name string
		r    LabelRedaction
		key  string // "" when valid
	}{
		{"valid", ok, ""},
		{"no labels", LabelRedaction{Elements: ok.Elements}, "policy.labels.redact[0].labels"},
		{"bad label", LabelRedaction{Labels: []string{"H I V"}, Elements: ok.Elements}, "policy.labels.redact[0].labels"},
		{"no elements", LabelRedaction{Labels: []string{"HIV"}}, "policy.labels.redact[0].elements"},
		{"unknown element", LabelRedaction{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"valu"}}}, "policy.labels.redact[0].elements.Observation"},
		{"meta", LabelRedaction{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {"meta"}}}, "policy.labels.redact[0].elements.Observation"},
		{"unknown type", LabelRedaction{Labels: []string{"HIV"}, Elements: map[string][]string{"NotAType": {"note"}}}, "policy.labels.redact[0].elements.NotAType"},
		{"empty list", LabelRedaction{Labels: []string{"HIV"}, Elements: map[string][]string{"Observation": {}}}, "policy.labels.redact[0].elements.Observation"},
	}
	for _, tt := range tests {
		cfg := Default()
		cfg.Policy.Labels.Redact = []LabelRedaction{tt.r}
		err := cfg.Validate()
		if tt.key == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("%s: Validate() = %v, want a problem naming %s", tt.name, err, tt.key)
		}
	}
	// The YAML shape.
	cfg := Default()
	err := Parse(strings.NewReader("policy:\n  labels:\n    redact:\n      - labels: [HIV]\n        elements:\n          Observation: [\"value[x]\", note]\n"), &cfg)
	if err != nil || len(cfg.Policy.Labels.Redact) != 1 || cfg.Policy.Labels.Redact[0].Elements["Observation"][0] != "value[x]" {
		t.Errorf("Parse: %v %+v", err, cfg.Policy.Labels)
	}
}
