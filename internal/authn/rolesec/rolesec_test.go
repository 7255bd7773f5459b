package rolesec_test

import (
	"reflect"
	"testing"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authn/rolesec"
	"github.com/fhirgate/fhirgate/internal/config"
)

func TestMerge(t *testing.T) {
	defined := map[string]config.Role{
		"clinician":  {Clearance: config.Clearance{Confidentiality: "N"}, PurposeOfUse: []string{"TREAT"}, BreakGlass: true},
		"bh":         {Clearance: config.Clearance{Confidentiality: "R", Sensitivity: []string{"PSY", "ETH"}}, PurposeOfUse: []string{"TREAT"}},
		"hiv":        {Clearance: config.Clearance{Confidentiality: "M", Sensitivity: []string{"HIV", "PSY"}}, PurposeOfUse: []string{"HPAYMT", "ETREAT"}},
		"officer":    {Clearance: config.Clearance{Confidentiality: "U"}},
		"everything": {Clearance: config.Clearance{Confidentiality: "V", Sensitivity: []string{"*"}}},
	}
	for _, tc := range []struct {
		name      string
		roles     []string
		clearance *authn.Clearance
		purposes  []string
	}{
		{"no roles", nil, nil, nil},
		{"only unknown roles", []string{"admin", "root", "BTG"}, nil, nil},
		{"one role", []string{"clinician"}, &authn.Clearance{Confidentiality: "N"}, []string{"TREAT"}},
		{"unknown roles are ignored", []string{"root", "bh"}, &authn.Clearance{Confidentiality: "R", Sensitivity: []string{"ETH", "PSY"}}, []string{"TREAT"}},
		{"highest confidentiality, union of codes and purposes", []string{"hiv", "clinician", "bh"},
			&authn.Clearance{Confidentiality: "R", Sensitivity: []string{"ETH", "HIV", "PSY"}}, []string{"ETREAT", "HPAYMT", "TREAT"}},
		{"a lower role does not lower the clearance", []string{"bh", "officer"}, &authn.Clearance{Confidentiality: "R", Sensitivity: []string{"ETH", "PSY"}}, []string{"TREAT"}},
		{"the lowest role alone", []string{"officer"}, &authn.Clearance{Confidentiality: "U"}, nil},
		{"wildcard kept", []string{"everything", "bh"}, &authn.Clearance{Confidentiality: "V", Sensitivity: []string{"*", "ETH", "PSY"}}, []string{"TREAT"}},
		{"names are exact", []string{"Clinician", "clinician "}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rolesec.Clearance(defined, tc.roles); !reflect.DeepEqual(got, tc.clearance) {
				t.Errorf("Clearance = %+v, want %+v", got, tc.clearance)
			}
			if got := rolesec.Purposes(defined, tc.roles); !reflect.DeepEqual(got, tc.purposes) {
				t.Errorf("Purposes = %v, want %v", got, tc.purposes)
			}
		})
	}
}

// The merge never writes into the configuration it reads.
func TestMergeLeavesRolesAlone(t *testing.T) {
	defined := map[string]config.Role{
		"a": {Clearance: config.Clearance{Confidentiality: "R", Sensitivity: []string{"PSY"}}, PurposeOfUse: []string{"TREAT"}},
		"b": {Clearance: config.Clearance{Confidentiality: "N", Sensitivity: []string{"ETH"}}, PurposeOfUse: []string{"HOPERAT"}},
	}
	c := rolesec.Clearance(defined, []string{"a", "b"})
	c.Sensitivity[0] = "XXX"
	p := rolesec.Purposes(defined, []string{"a", "b"})
	p[0] = "XXX"
	if defined["a"].Clearance.Sensitivity[0] != "PSY" || defined["b"].Clearance.Sensitivity[0] != "ETH" ||
		defined["a"].PurposeOfUse[0] != "TREAT" || defined["b"].PurposeOfUse[0] != "HOPERAT" {
		t.Fatalf("the merge aliased the configuration: %+v", defined)
	}
}
