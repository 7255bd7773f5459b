package app

import (
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demo"
)

// demoAccounts are the users and clients `serve --demo` adds so that a SMART flow can be tried at
// once. Their passwords are printed at start: they are for a demo on a developer's machine only.
type demoAccounts struct {
	users   []config.User
	clients []config.Client
}

// Demo logins, printed at start.
const (
	demoPatientPassword   = "alice-demo-password"
	demoPatient2Password  = "bob-demo-password"
	demoClinicianPassword = "smith-demo-password"
	demoPsychPassword     = "novak-demo-password"
	demoClientID          = "demo-app"
	demoServiceClientID   = "demo-confidential"
	demoServiceSecret     = "demo-confidential-secret-0123456789"
)

func newDemoAccounts(cfg config.Config) *demoAccounts {
	return &demoAccounts{
		users: []config.User{
			{Username: "alice", Password: demoPatientPassword, FHIRUser: "Patient/" + demo.AlicePatientID, Roles: []string{"patient"}},
			{Username: "bob", Password: demoPatient2Password, FHIRUser: "Patient/" + demo.BobPatientID, Roles: []string{"patient"}},
			{Username: "drsmith", Password: demoClinicianPassword, FHIRUser: "Practitioner/" + demo.SmithPractitioner, Roles: []string{"clinician"}},
			// A psychiatrist: clinician plus the behavioral-health clearance (restricted
			// mental-health and substance-use data).
			{Username: "drnovak", Password: demoPsychPassword, FHIRUser: "Practitioner/" + demoPsychiatrist, Roles: []string{"clinician", "behavioral-health"}},
		},
		clients: []config.Client{
			{
				ClientID: demoClientID, ClientName: "fhirgate demo app",
				RedirectURIs:            []string{cfg.Issuer() + "/demo/app/", "http://localhost:3000/callback"},
				TokenEndpointAuthMethod: "none",
				GrantTypes:              []string{"authorization_code", "refresh_token"},
				Scope:                   "openid fhirUser profile launch launch/patient offline_access online_access patient/*.rs patient/*.read patient/Consent.cruds user/*.rs user/*.read",
				LaunchURL:               cfg.Issuer() + "/demo/app/launch",
			},
			{
				ClientID: demoServiceClientID, ClientName: "fhirgate demo confidential app",
				ClientSecret:            demoServiceSecret,
				RedirectURIs:            []string{"http://localhost:3000/callback"},
				TokenEndpointAuthMethod: "client_secret_basic",
				GrantTypes:              []string{"authorization_code", "refresh_token", "client_credentials"},
				Scope:                   "openid fhirUser launch launch/patient offline_access patient/*.cruds user/*.cruds system/*.rs",
			},
		},
	}
}
