package audit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// FilterFromQuery maps AuditEvent search parameters to a store filter, for GET /fhir/AuditEvent:
//
//	date=ge2026-11-01 / date=lt2026-11-02T10:00:00Z   (ge, gt, le, lt; a date or dateTime; repeatable)
//	patient=Patient/123 or 123                         (entity reference of the patient)
//	agent=alice | my-app | Practitioner/9              (client id, user, or fhirUser)
//	outcome=success | denied | failure | error         (fhirgate outcome, the outcome extension)
//	subtype=read | search-type | login | ...           (fhirgate action code)
//	_sort=date | -date                                 (oldest or newest first; newest by default)
//	_count=N                                           (page size, at most 1000)
//	_cursor=SEQ                                        (keyset continuation: from the next link)
//
// Any other parameter is an error, so that a filter the caller believed applied is never dropped.
func FilterFromQuery(q url.Values) (sqlstore.AuditFilter, error) {
	var f sqlstore.AuditFilter
	for name, vals := range q {
		if len(vals) > 1 && name != "date" {
			return f, fmt.Errorf("audit: search parameter %s given more than once", name)
		}
		for _, v := range vals {
			switch name {
			case "date":
				if err := dateBound(&f, v); err != nil {
					return f, err
				}
			case "patient", "entity":
				v = strings.TrimPrefix(v, "Patient/")
				if v == "" || strings.Contains(v, "/") {
					return f, fmt.Errorf("audit: %s must be a Patient reference or id", name)
				}
				f.Patient = v
			case "agent":
				if v == "" {
					return f, fmt.Errorf("audit: agent is empty")
				}
				f.Agent = v
			case "outcome":
				if !Outcome(v).Valid() {
					return f, fmt.Errorf("audit: outcome must be success, denied, failure or error")
				}
				f.Outcome = v
			case "subtype", "action":
				if !Action(v).Valid() {
					return f, fmt.Errorf("audit: unknown subtype %q", v)
				}
				f.Action = v
			case "_sort":
				switch v {
				case "date", "_lastUpdated":
					f.Ascending = true
				case "-date", "-_lastUpdated":
					f.Ascending = false
				default:
					return f, fmt.Errorf("audit: _sort must be date or -date")
				}
			case "_count":
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					return f, fmt.Errorf("audit: _count must be a positive integer")
				}
				f.Limit = min(n, 1000)
			case "_cursor":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 {
					return f, fmt.Errorf("audit: _cursor is not valid")
				}
				f.Cursor = n
			default:
				return f, fmt.Errorf("audit: unsupported search parameter %q", name)
			}
		}
	}
	return f, nil
}

func dateBound(f *sqlstore.AuditFilter, v string) error {
	if len(v) < 3 {
		return fmt.Errorf("audit: date needs a prefix (ge, gt, le, lt) and a value")
	}
	prefix, val := v[:2], v[2:]
	t, precision, err := parseFHIRDate(val)
	if err != nil {
		return err
	}
	switch prefix {
	case "ge":
		f.Since = later(f.Since, t)
	case "gt":
		f.Since = later(f.Since, t.Add(precision))
	case "lt":
		f.Until = earlier(f.Until, t)
	case "le":
		f.Until = earlier(f.Until, t.Add(precision))
	default:
		return fmt.Errorf("audit: date prefix must be ge, gt, le or lt")
	}
	return nil
}

// parseFHIRDate parses a FHIR date (YYYY-MM-DD) or dateTime with zone; the duration is the
// precision of the value (a day, or a microsecond).
func parseFHIRDate(v string) (time.Time, time.Duration, error) {
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, 24 * time.Hour, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), time.Microsecond, nil
	}
	return time.Time{}, 0, fmt.Errorf("audit: date %q is not YYYY-MM-DD or an RFC 3339 dateTime with zone", v)
}

func later(a, b time.Time) time.Time {
	if a.IsZero() || b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// SearchBundle wraps a page of entries as a FHIR searchset Bundle of AuditEvents. next, when not
// empty, is the URL of the next page (build it with the last entry's Seq as _cursor when the page
// is full).
func SearchBundle(entries []sqlstore.AuditEntry, base, self, next string) ([]byte, error) {
	type link struct {
		Relation string `json:"relation"`
		URL      string `json:"url"`
	}
	type bundleEntry struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Search   struct {
			Mode string `json:"mode"`
		} `json:"search"`
	}
	b := struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Link         []link        `json:"link"`
		Entry        []bundleEntry `json:"entry,omitempty"`
	}{ResourceType: "Bundle", Type: "searchset", Link: []link{{"self", self}}}
	if next != "" {
		b.Link = append(b.Link, link{"next", next})
	}
	for _, e := range entries {
		be := bundleEntry{FullURL: strings.TrimRight(base, "/") + "/AuditEvent/" + e.ID, Resource: e.Event}
		be.Search.Mode = "match"
		b.Entry = append(b.Entry, be)
	}
	return json.Marshal(b)
}
