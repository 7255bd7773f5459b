package smart

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseScopeValid(t *testing.T) {
	tests := []struct {
		in      string
		norm    string // String()
		echo    string // Echo(); "" means same as in
		kind    Kind
		ctx     Context
		typ     string
		perms   Perms
		syntax  Syntax
		nConstr int
	}{
		{in: "openid", norm: "openid", kind: KindOpenID},
		{in: "fhirUser", norm: "fhirUser", kind: KindFHIRUser},
		{in: "profile", norm: "profile", kind: KindProfile},
		{in: "launch", norm: "launch", kind: KindLaunch},
		{in: "launch/patient", norm: "launch/patient", kind: KindLaunchPatient},
		{in: "launch/encounter", norm: "launch/encounter", kind: KindLaunchEncounter},
		{in: "offline_access", norm: "offline_access", kind: KindOfflineAccess},
		{in: "online_access", norm: "online_access", kind: KindOnlineAccess},
		{in: "patient/Observation.read", norm: "patient/Observation.rs", kind: KindResource, ctx: ContextPatient, typ: "Observation", perms: PermsV1Read, syntax: SyntaxV1},
		{in: "user/Patient.write", norm: "user/Patient.cud", kind: KindResource, ctx: ContextUser, typ: "Patient", perms: PermsV1Write, syntax: SyntaxV1},
		{in: "user/*.*", norm: "user/*.cruds", kind: KindResource, ctx: ContextUser, typ: "*", perms: PermsAll, syntax: SyntaxV1},
		{in: "system/*.read", norm: "system/*.rs", kind: KindResource, ctx: ContextSystem, typ: "*", perms: PermsV1Read, syntax: SyntaxV1},
		{in: "patient/*.rs", norm: "patient/*.rs", kind: KindResource, ctx: ContextPatient, typ: "*", perms: PermRead | PermSearch},
		{in: "patient/Condition.r", norm: "patient/Condition.r", kind: KindResource, ctx: ContextPatient, typ: "Condition", perms: PermRead},
		{in: "user/Observation.cruds", norm: "user/Observation.cruds", kind: KindResource, ctx: ContextUser, typ: "Observation", perms: PermsAll},
		{in: "user/Observation.cd", norm: "user/Observation.cd", kind: KindResource, ctx: ContextUser, typ: "Observation", perms: PermCreate | PermDelete},
		{in: "system/Patient.s", norm: "system/Patient.s", kind: KindResource, ctx: ContextSystem, typ: "Patient", perms: PermSearch},
		{
			in:   "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			norm: "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			kind: KindResource, ctx: ContextPatient, typ: "Observation", perms: PermsV1Read, nConstr: 1,
		},
		{
			in:   "patient/Condition.rs?category=a&clinical-status=active,recurrence",
			norm: "patient/Condition.rs?category=a&clinical-status=active,recurrence",
			kind: KindResource, ctx: ContextPatient, typ: "Condition", perms: PermsV1Read, nConstr: 2,
		},
		{in: "user/*.rs?_security=R", norm: "user/*.rs?_security=R", kind: KindResource, ctx: ContextUser, typ: "*", perms: PermsV1Read, nConstr: 1},
		{in: "patient/Observation.rs?code=http://loinc.org%7C1234-5", norm: "patient/Observation.rs?code=http://loinc.org|1234-5", kind: KindResource, ctx: ContextPatient, typ: "Observation", perms: PermsV1Read, nConstr: 1},
		// Duplicate constraints collapse.
		{in: "patient/Observation.rs?category=a&category=a", norm: "patient/Observation.rs?category=a", kind: KindResource, ctx: ContextPatient, typ: "Observation", perms: PermsV1Read, nConstr: 1},
		// Escaped characters survive a round trip.
		{in: "patient/Observation.rs?code=a%26b%25", norm: "patient/Observation.rs?code=a%26b%25", kind: KindResource, ctx: ContextPatient, typ: "Observation", perms: PermsV1Read, nConstr: 1},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			s, err := ParseScope(tc.in)
			if err != nil {
				t.Fatalf("ParseScope(%q) error %v", tc.in, err)
			}
			if got := s.String(); got != tc.norm {
				t.Errorf("ParseScope(%q).String() = %q, want %q", tc.in, got, tc.norm)
			}
			echo := tc.echo
			if echo == "" && !strings.Contains(tc.in, "%") && !strings.Contains(tc.in, "&category=a") {
				echo = tc.in
			}
			if echo != "" {
				if got := s.Echo(); got != echo {
					t.Errorf("ParseScope(%q).Echo() = %q, want %q", tc.in, got, echo)
				}
			}
			if s.Kind != tc.kind || s.Context != tc.ctx || s.Type != tc.typ || s.Perms != tc.perms || s.Syntax != tc.syntax || len(s.Constraints) != tc.nConstr {
				t.Errorf("ParseScope(%q) = %+v", tc.in, s)
			}
			again, err := ParseScope(s.String())
			if err != nil || !again.Equal(s) {
				t.Errorf("round trip of %q: %+v, %v", s.String(), again, err)
			}
		})
	}
}

// TestParseScopeInvalid is SECURITY-LESSONS #4: lenient parsing widens access. Every token here
// must be refused outright, never partially understood.
func TestParseScopeInvalid(t *testing.T) {
	bad := []string{
		"",
		" ",
		"patient/Observation.readx",                           // partial v1 match
		"patient/Observation.rs ",                             // trailing garbage
		" patient/Observation.rs",                             // leading garbage
		"patient/Observation.rs\t",                            // control character
		"patient/Observation.rs\n",                            //
		"patient/Observation.sr",                              // out of order
		"patient/Observation.rr",                              // duplicate
		"patient/Observation.rsx",                             // unknown letter
		"patient/Observation.dus",                             // out of order (IG example)
		"patient/Observation.",                                // no perms
		"patient/Observation",                                 // no '.'
		"patient/Observation.Read",                            // case
		"patient/Observation.READ",                            //
		"patient/Observation.read.write",                      // two permission parts
		"patient/Observation.r.s",                             //
		"patient/Observations.rs",                             // not a resource type
		"patient/observation.rs",                              // case of type
		"patient/Foo.rs",                                      //
		"patient/DomainResource.rs",                           // abstract, not a resource type
		"patient/Resource.rs",                                 //
		"patient/**.rs",                                       //
		"patient/.rs",                                         //
		"patient/*",                                           //
		"Patient/Observation.rs",                              // context case
		"practitioner/Observation.rs",                         // unknown context
		"patient/Observation.rs/extra",                        //
		"patient//Observation.rs",                             //
		"patientObservation.rs",                               //
		"patient/Observation.read?category=x",                 // v1 with constraints
		"patient/Observation.*?category=x",                    //
		"patient/Observation.rs?",                             // empty query
		"patient/Observation.rs?category",                     // no '='
		"patient/Observation.rs?category=",                    // empty value
		"patient/Observation.rs?=x",                           // empty name
		"patient/Observation.rs?category=a&",                  // empty pair
		"patient/Observation.rs?category=a,,b",                // empty alternative
		"patient/Observation.rs?code:in=http://vs",            // modifier
		"patient/Observation.rs?code:not=x",                   //
		"patient/Observation.rs?patient.name=x",               // chain
		"patient/Observation.rs?subject:Patient.name=x",       //
		"patient/Observation.rs?_include=Observation:subject", // include
		"patient/Observation.rs?_revinclude=Provenance:target",
		"patient/Observation.rs?_has:Group:member:_id=1", // reverse chain
		"patient/Observation.rs?_filter=code eq x",       //
		"patient/Observation.rs?_type=Patient",           //
		"patient/Observation.rs?_count=1",                //
		"patient/Observation.rs?_summary=count",          //
		"patient/Observation.rs?1abc=x",                  // name must start with a letter
		"patient/Observation.rs?category=%zz",            // bad percent-encoding
		"patient/Observation.rs?category=%0a",            // control character after decoding
		"patient/Observation.rs?category=%5Cx",           // backslash after decoding
		"patient/Observation.rs?category=%ff",            // not UTF-8
		"patient/Observation.rs?category=\"x\"",          // quote is not a scope character
		"launch/Patient",                                 //
		"launch/",                                        //
		"launch/patient/x",                               //
		"openid2",                                        //
		"OPENID",                                         //
		"fhiruser",                                       //
		"offline-access",                                 //
		"patient/Observation.rs\u00a0",                   // non-ASCII
		strings.Repeat("a", maxScopeLen+1),               //
		"patient/Observation.rs?" + strings.Repeat("a=b&", maxConstraints) + "a=c", // too many constraints
	}
	for _, in := range bad {
		t.Run(in, func(t *testing.T) {
			s, err := ParseScope(in)
			if err == nil {
				t.Fatalf("ParseScope(%q) = %+v, want error", in, s)
			}
			if !errors.Is(err, ErrInvalidScope) {
				t.Errorf("ParseScope(%q) error %v does not wrap ErrInvalidScope", in, err)
			}
		})
	}
}

func TestEcho(t *testing.T) {
	tests := []struct{ in, echo string }{
		{"patient/Observation.read", "patient/Observation.read"},
		{"patient/Observation.rs", "patient/Observation.rs"},
		{"user/*.*", "user/*.*"},
		{"user/*.write", "user/*.write"},
	}
	for _, tc := range tests {
		s, err := ParseScope(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Echo(); got != tc.echo {
			t.Errorf("Echo(%q) = %q, want %q", tc.in, got, tc.echo)
		}
	}
	// A v1 scope narrowed to something v1 cannot say falls back to v2.
	s, _ := ParseScope("patient/Observation.read")
	s.Perms = PermRead
	if got := s.Echo(); got != "patient/Observation.r" {
		t.Errorf("Echo of narrowed v1 scope = %q, want patient/Observation.r", got)
	}
}

func mustScope(t testing.TB, s string) Scope {
	t.Helper()
	sc, err := ParseScope(s)
	if err != nil {
		t.Fatalf("ParseScope(%q): %v", s, err)
	}
	return sc
}

func TestCovers(t *testing.T) {
	tests := []struct {
		granted, requested string
		want               bool
	}{
		{"patient/Observation.rs", "patient/Observation.rs", true},
		{"patient/Observation.rs", "patient/Observation.r", true},
		{"patient/Observation.rs", "patient/Observation.s", true},
		{"patient/Observation.read", "patient/Observation.rs", true},
		{"patient/Observation.rs", "patient/Observation.read", true},
		{"patient/Observation.r", "patient/Observation.rs", false},
		{"patient/Observation.rs", "patient/Observation.cruds", false},
		{"patient/*.rs", "patient/Observation.rs", true},
		{"patient/*.*", "patient/Observation.cud", true},
		{"patient/Observation.rs", "patient/*.rs", false},
		{"patient/Observation.rs", "patient/Condition.rs", false},
		{"user/Observation.rs", "patient/Observation.rs", false},
		{"patient/Observation.rs", "user/Observation.rs", false},
		{"system/*.rs", "user/Observation.rs", false},
		{"patient/Observation.rs", "patient/Observation.rs?category=lab", true},
		{"patient/Observation.rs?category=lab", "patient/Observation.rs", false},
		{"patient/Observation.rs?category=lab", "patient/Observation.rs?category=lab", true},
		{"patient/Observation.rs?category=lab", "patient/Observation.r?category=lab", true},
		{"patient/Observation.rs?category=lab", "patient/Observation.rs?category=vital", false},
		{"patient/Observation.rs?category=lab,vital", "patient/Observation.rs?category=lab", true},
		{"patient/Observation.rs?category=lab", "patient/Observation.rs?category=lab,vital", false},
		{"patient/Observation.rs?category=lab", "patient/Observation.rs?category=lab&code=x", true},
		{"patient/Observation.rs?category=lab&code=x", "patient/Observation.rs?category=lab", false},
		{"patient/*.rs?_security=N", "patient/Observation.rs?_security=N", true},
		{"openid", "openid", true},
		{"openid", "fhirUser", false},
		{"launch", "launch/patient", false},
		{"launch/patient", "launch/patient", true},
		{"patient/*.rs", "openid", false},
	}
	for _, tc := range tests {
		g, r := mustScope(t, tc.granted), mustScope(t, tc.requested)
		if got := Covers(g, r); got != tc.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", tc.granted, tc.requested, got, tc.want)
		}
		if got := Strategy([]string{"openid", tc.granted}, tc.requested); got != (tc.want || tc.requested == "openid") {
			t.Errorf("Strategy([openid %q], %q) = %v", tc.granted, tc.requested, got)
		}
	}
	if Covers(Scope{}, Scope{}) {
		t.Error("Covers(zero, zero) = true, want false")
	}
	if Strategy([]string{"patient/*.rs"}, "patient/Observation.readx") {
		t.Error("Strategy accepted an invalid requested scope")
	}
	if Strategy([]string{"patient/*.readx"}, "patient/Observation.rs") {
		t.Error("Strategy accepted an invalid granted scope")
	}
}

func TestParseScopes(t *testing.T) {
	ss, dropped := ParseScopes("openid  fhirUser patient/Observation.read patient/Observation.rs patient/Foo.rs bogus launch/patient patient/Observation.sr")
	if got, want := ss.String(), "openid fhirUser patient/Observation.rs launch/patient"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := ss.Echo(), "openid fhirUser patient/Observation.read launch/patient"; got != want {
		t.Errorf("Echo() = %q, want %q", got, want)
	}
	if got, want := strings.Join(dropped, " "), "patient/Foo.rs bogus patient/Observation.sr"; got != want {
		t.Errorf("dropped = %q, want %q", got, want)
	}
	if !ss.Has(KindOpenID) || ss.Has(KindOfflineAccess) {
		t.Error("Has is wrong")
	}
	if !ss.HasContext(ContextPatient) || ss.HasContext(ContextUser) {
		t.Error("HasContext is wrong")
	}
	if ss, d := ParseScopes(""); len(ss) != 0 || len(d) != 0 {
		t.Errorf("ParseScopes(\"\") = %v, %v", ss, d)
	}
	// Tabs are not separators: the whole token is dropped rather than split.
	if ss, d := ParseScopes("openid\tpatient/*.rs"); len(ss) != 0 || len(d) != 1 {
		t.Errorf("ParseScopes with tab = %v, %v", ss, d)
	}
	many := strings.Repeat("openid ", maxScopes+5)
	if ss, d := ParseScopes(many); len(ss) != 1 || len(d) != 5 {
		t.Errorf("ParseScopes(many) kept %d, dropped %d", len(ss), len(d))
	}
}

func TestIntersect(t *testing.T) {
	tests := []struct {
		name, requested, allowed, want, echo string
	}{
		{"same", "openid patient/Observation.rs", "openid patient/Observation.rs", "openid patient/Observation.rs", ""},
		{"drop unknown kinds", "openid fhirUser offline_access", "openid", "openid", ""},
		{"wildcard narrowed to types", "patient/*.rs", "patient/Observation.rs patient/Condition.r", "patient/Observation.rs patient/Condition.r", ""},
		{"perms narrowed", "patient/Observation.cruds", "patient/*.rs", "patient/Observation.rs", ""},
		{"v1 request keeps v1 echo", "patient/*.read", "patient/*.rs", "patient/*.rs", "patient/*.read"},
		{"v1 narrowed to non-v1 perms", "patient/Observation.read", "patient/Observation.r", "patient/Observation.r", "patient/Observation.r"},
		{"contexts never mix", "user/Observation.rs", "patient/*.rs", "", ""},
		{"granular allowed narrows", "patient/Observation.rs", "patient/Observation.rs?category=laboratory", "patient/Observation.rs?category=laboratory", ""},
		{"granular request within", "patient/Observation.rs?category=laboratory", "patient/Observation.rs", "patient/Observation.rs?category=laboratory", ""},
		{"granular both", "patient/Observation.rs?category=a", "patient/Observation.rs?code=b", "patient/Observation.rs?category=a&code=b", ""},
		{"redundant removed", "patient/Observation.rs patient/Observation.r", "patient/*.cruds", "patient/Observation.rs", ""},
		{"covered by wildcard removed", "patient/Observation.rs patient/*.rs", "patient/*.rs", "patient/*.rs", ""},
		{"no perms in common", "patient/Observation.cud", "patient/Observation.rs", "", ""},
		{"empty allowed", "openid patient/*.rs", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := ParseScopes(tc.requested)
			al, _ := ParseScopes(tc.allowed)
			got := req.Intersect(al)
			if got.String() != tc.want {
				t.Errorf("Intersect(%q, %q) = %q, want %q", tc.requested, tc.allowed, got.String(), tc.want)
			}
			if tc.echo != "" && got.Echo() != tc.echo {
				t.Errorf("Intersect(%q, %q).Echo() = %q, want %q", tc.requested, tc.allowed, got.Echo(), tc.echo)
			}
			// Whatever is granted is covered by both sides.
			for _, g := range got {
				if !al.Covers(g) {
					t.Errorf("granted %q not covered by allowed %q", g, tc.allowed)
				}
				if !req.Covers(g) {
					t.Errorf("granted %q not covered by requested %q", g, tc.requested)
				}
			}
		})
	}
}

func TestSplitReference(t *testing.T) {
	tests := []struct {
		in, typ, id string
		ok          bool
	}{
		{"Patient/123", "Patient", "123", true},
		{"Practitioner/a.b-c", "Practitioner", "a.b-c", true},
		{"Patient/", "", "", false},
		{"Patient", "", "", false},
		{"Foo/1", "", "", false},
		{"Patient/1/_history/2", "", "", false},
		{"https://x/Patient/1", "", "", false},
		{"Patient/" + strings.Repeat("1", 65), "", "", false},
		{"Patient/a b", "", "", false},
	}
	for _, tc := range tests {
		typ, id, ok := SplitReference(tc.in)
		if typ != tc.typ || id != tc.id || ok != tc.ok {
			t.Errorf("SplitReference(%q) = %q, %q, %v, want %q, %q, %v", tc.in, typ, id, ok, tc.typ, tc.id, tc.ok)
		}
	}
}

func TestPermsString(t *testing.T) {
	if got := PermsAll.String(); got != "cruds" {
		t.Errorf("PermsAll.String() = %q", got)
	}
	if got := (PermCreate | PermSearch).String(); got != "cs" {
		t.Errorf("cs = %q", got)
	}
	if !PermsAll.Has(PermsV1Write) || PermsV1Read.Has(PermUpdate) {
		t.Error("Has is wrong")
	}
}

func BenchmarkParseScopes(b *testing.B) {
	const s = "openid fhirUser launch/patient offline_access patient/*.rs patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory user/Practitioner.read"
	b.ReportAllocs()
	for b.Loop() {
		ParseScopes(s)
	}
}

// TestIntersectBounded: a hostile request of many distinct granular scopes must not make
// Intersect quadratic in the product of both sides.
func TestIntersectBounded(t *testing.T) {
	var b strings.Builder
	for i := range maxScopes {
		fmt.Fprintf(&b, "patient/Observation.rs?code=c%d ", i)
	}
	req, _ := ParseScopes(b.String())
	got := req.Intersect(req)
	if len(got) != maxScopes {
		t.Fatalf("Intersect returned %d scopes", len(got))
	}
	for _, g := range got {
		if !req.Covers(g) {
			t.Fatalf("Intersect widened to %q", g)
		}
	}
}
