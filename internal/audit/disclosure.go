package audit

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// DisclosureView returns the AuditEvent of entry e as shown to patient patientID in the
// accounting of disclosures of their record (Patient/{id}/$access-log): who (user, client, their
// roles and purpose of use), what kind of access, when, with what outcome, and which of the
// patient's resources. What concerns others or the server's operation is removed: the network
// address, user agent and request id, the query (it can name other people), the token id and the
// other details of the outcome extension, the other patients of the event, and, when the event
// concerned other patients too, the resources it touched (they cannot be told apart without
// reading them).
func DisclosureView(e sqlstore.AuditEntry, patientID string) ([]byte, error) {
	var ae map[string]json.RawMessage
	if err := json.Unmarshal(e.Event, &ae); err != nil {
		return nil, fmt.Errorf("audit: entry %d: %w", e.Seq, err)
	}
	out := map[string]json.RawMessage{}
	for _, k := range []string{"resourceType", "id", "meta", "type", "subtype", "action", "period", "recorded", "outcome",
		"outcomeDesc", "purposeOfEvent", "source"} {
		if v, ok := ae[k]; ok {
			out[k] = v
		}
	}
	var agents []map[string]json.RawMessage
	if err := json.Unmarshal(ae["agent"], &agents); err == nil {
		for _, a := range agents {
			delete(a, "network")
		}
		if out["agent"], err = json.Marshal(agents); err != nil {
			return nil, err
		}
	}
	onlyThisPatient := len(e.Patients) == 1 && e.Patients[0] == patientID
	var ents []entity
	if err := json.Unmarshal(ae["entity"], &ents); err == nil {
		var kept []entity
		for _, en := range ents {
			if en.Role == nil || en.Role.System != systemObjectRole {
				continue // request id and user agent
			}
			switch en.Role.Code {
			case "1": // Patient
				if en.What.Reference == "Patient/"+patientID {
					kept = append(kept, en)
				}
			case "4": // Domain Resource
				if onlyThisPatient {
					kept = append(kept, en)
				}
			}
		}
		if len(kept) > 0 {
			raw, err := json.Marshal(kept)
			if err != nil {
				return nil, err
			}
			out["entity"] = raw
		}
	}
	return json.Marshal(out)
}

// DisclosureEntries returns copies of entries whose events are their DisclosureView for
// patientID, for SearchBundle.
func DisclosureEntries(entries []sqlstore.AuditEntry, patientID string) ([]sqlstore.AuditEntry, error) {
	out := slices.Clone(entries)
	for i := range out {
		v, err := DisclosureView(out[i], patientID)
		if err != nil {
			return nil, err
		}
		out[i].Event = v
	}
	return out, nil
}
