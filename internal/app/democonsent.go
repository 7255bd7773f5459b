package app

import (
	"context"
	"fmt"
	"time"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/demo"
)

// demoPsychiatrist is the demo's psychiatrist (the drnovak login).
const demoPsychiatrist = "pr-novak"

// demoConsents are the patient-privacy Consents of the demo (README "Security labels, Consent
// and break-glass"): Bob keeps the psychiatrist out of his whole record; Alice keeps Dr Garcia
// out of her observations from 2020 on.
var demoConsents = []struct{ id, body string }{
	{"demo-consent-bob", `{"resourceType":"Consent","id":"demo-consent-bob","status":"active",
		"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
		"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0","display":"Patient Consent"}]}],
		"patient":{"reference":"Patient/` + demo.BobPatientID + `"},"dateTime":"%s",
		"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
		"provision":{"type":"permit","provision":[{"type":"deny",
			"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Practitioner/` + demoPsychiatrist + `"}}]}]}}`},
	{"demo-consent-alice", `{"resourceType":"Consent","id":"demo-consent-alice","status":"active",
		"scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},
		"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0","display":"Patient Consent"}]}],
		"patient":{"reference":"Patient/` + demo.AlicePatientID + `"},"dateTime":"%s",
		"policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]},
		"provision":{"type":"permit","provision":[{"type":"deny",
			"actor":[{"role":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"PRCP"}]},"reference":{"reference":"Practitioner/pr-garcia"}}],
			"class":[{"system":"http://hl7.org/fhir/resource-types","code":"Observation"}],
			"dataPeriod":{"start":"2020-01-01"}}]}}`},
}

// loadDemoConsents writes the demo Consents.
func loadDemoConsents(ctx context.Context, b backend.Backend, now time.Time) error {
	for _, c := range demoConsents {
		body := fmt.Sprintf(c.body, now.UTC().Format(time.RFC3339))
		if _, _, err := b.Update(ctx, "Consent", c.id, []byte(body), backend.UpdateOptions{}); err != nil {
			return fmt.Errorf("demo consent %s: %w", c.id, err)
		}
	}
	return nil
}
