package multiinstance

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// A patient's Consent written at one instance binds at the other within the notice delivery time
// (not the minute both cache Consents for), and withdrawing it at the other frees the first. An
// own deployment, without the rate limit of TestTwoInstancesActAsOne: the test polls.
func TestConsentAcrossInstances(t *testing.T) {
	e := newEnv(t, "", nil)
	a := e.start("A", freeAddr(t))
	b := e.start("B", freeAddr(t))
	ctx := context.Background()
	// Both instances cache a patient's Consents for policy.consent.cache_ttl (1m): only the
	// notice over Redis makes the other instance read them again. The Consent denies
	// everyone the patient's Observations (a deny of everything would hide the Consent
	// itself from the writer too).
	w, r := e.clientTokenScope(a, "writer", "system/*.cruds"), e.backendToken(a)
	pid := "cc-" + randHex(6)
	if st, m, err := fhirWrite(ctx, a, http.MethodPut, "Patient/"+pid, w, `{"resourceType":"Patient","id":"`+pid+`"}`); err != nil || st/100 != 2 {
		t.Fatalf("patient: %d %v %v", st, m, err)
	}
	st, m, err := fhirWrite(ctx, a, http.MethodPost, "Observation", w, `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/`+pid+`"}}`)
	if err != nil || st != 201 {
		t.Fatalf("observation: %d %v %v", st, m, err)
	}
	obs := "Observation/" + m["id"].(string)
	// until waits for a read of obs at in to answer allowed (200) or refused (403/404).
	until := func(in *instance, allowed bool, what string) {
		t.Helper()
		start := time.Now()
		for n := 1; ; n++ {
			st, err := fhirGet(ctx, in, obs, r)
			if err == nil && (st == 200) == allowed && (allowed || st == 403 || st == 404) {
				t.Logf("%s after %s (read %d)", what, time.Since(start).Round(time.Millisecond), n)
				return
			}
			if time.Since(start) > time.Second {
				t.Fatalf("%s: %s still answers %d (%v) after a second", what, in.name, st, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, in := range []*instance{a, b, b} { // B caches "no Consents"
		if st, err := fhirGet(ctx, in, obs, r); err != nil || st != 200 {
			t.Fatalf("%s before the Consent: %d %v", in.name, st, err)
		}
	}
	st, m, err = fhirWrite(ctx, a, http.MethodPost, "Consent", w, `{"resourceType":"Consent","status":"active",
		"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
		"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],
		"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
		"patient":{"reference":"Patient/`+pid+`"},"provision":{"type":"permit",
		"provision":[{"type":"deny","class":[{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}]}]}}`)
	if err != nil || st != 201 {
		t.Fatalf("Consent at A: %d %v %v", st, m, err)
	}
	until(b, false, "Consent written at A, read refused at B")
	for range 2 { // A caches the deny
		if st, err := fhirGet(ctx, a, obs, r); err != nil || (st != 403 && st != 404) {
			t.Fatalf("A with the Consent: %d %v", st, err)
		}
	}
	if st, m, err := fhirWrite(ctx, b, http.MethodDelete, "Consent/"+m["id"].(string), w, ""); err != nil || st/100 != 2 {
		t.Fatalf("withdraw at B: %d %v %v", st, m, err)
	}
	until(a, true, "Consent withdrawn at B, read allowed at A")
}
