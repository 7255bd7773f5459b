package authserver

import (
	"reflect"
	"testing"

	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

// TestSecurityClearance: a user's roles merge (highest confidentiality, every code); a client's
// roles bound them (lower confidentiality, common codes); a client_credentials token carries
// the client's; no known role gives no claim (the FHIR API's default clearance).
func TestSecurityClearance(t *testing.T) {
	sec := &Security{
		Roles: map[string]config.Role{
			"clinician": {Clearance: config.Clearance{Confidentiality: "N"}, PurposeOfUse: []string{"TREAT"}},
			"bh":        {Clearance: config.Clearance{Confidentiality: "R", Sensitivity: []string{"PSY", "SUD"}}},
			"patient":   {Clearance: config.Clearance{Confidentiality: "V", Sensitivity: []string{"*"}}},
			"app-psy":   {Clearance: config.Clearance{Confidentiality: "M", Sensitivity: []string{"PSY", "HIV"}}},
		},
		ClientRoles: map[string][]string{"psy-app": {"app-psy"}, "svc": {"bh"}},
	}
	c := func(conf string, s ...string) *tokens.Clearance {
		return &tokens.Clearance{Confidentiality: conf, Sensitivity: s}
	}
	tests := []struct {
		name    string
		roles   []string
		hasUser bool
		client  string
		want    *tokens.Clearance
	}{
		{"one role", []string{"clinician"}, true, "x", c("N")},
		{"roles merge", []string{"clinician", "bh"}, true, "x", c("R", "PSY", "SUD")},
		{"client bounds the user", []string{"clinician", "bh"}, true, "psy-app", c("M", "PSY")},
		{"client bounds a wildcard user", []string{"patient"}, true, "psy-app", c("M", "HIV", "PSY")},
		{"unknown roles", []string{"nobody"}, true, "psy-app", nil},
		{"client credentials", nil, false, "svc", c("R", "PSY", "SUD")},
		{"client without roles", nil, false, "x", nil},
	}
	for _, tt := range tests {
		if got := sec.Clearance(tt.roles, tt.hasUser, tt.client); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if got := (*Security)(nil).Clearance([]string{"clinician"}, true, "x"); got != nil {
		t.Errorf("nil Security: %+v", got)
	}
}

// TestRequestedPurposes: role defaults; narrowing only to the roles' purposes; BTG alone.
func TestRequestedPurposes(t *testing.T) {
	s := &Server{cfg: Config{Security: &Security{Roles: map[string]config.Role{
		"clinician": {PurposeOfUse: []string{"ETREAT", "TREAT"}},
	}}}}
	u := &User{Roles: []string{"clinician"}}
	tests := []struct {
		form    map[string][]string
		want    []string
		btg, ok bool
	}{
		{nil, []string{"ETREAT", "TREAT"}, false, true},
		{map[string][]string{ParamPurposeOfUse: {"TREAT"}}, []string{"TREAT"}, false, true},
		{map[string][]string{ParamPurposeOfUse: {"HMARKT"}}, nil, false, false},
		{map[string][]string{ParamPurposeOfUse: {"TREAT BTG"}}, []string{"BTG"}, true, true},
	}
	for i, tt := range tests {
		got, btg, err := s.requestedPurposes(u, tt.form)
		if (err == nil) != tt.ok || btg != tt.btg || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%d: %v %v %v", i, got, btg, err)
		}
	}
}
