package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// Search is an AuditEvent search: the store filter (indexed: date, patient, agent, outcome,
// subtype) plus the conditions the store does not index, checked on each entry read:
//
//	type=rest | 110114 | 110113 | system|code[,...]   (AuditEvent.type; any of the values)
//	entity=Type/id                                     (any entity; a Patient goes to the index)
//
// Every parameter of FilterFromQuery is accepted too.
type Search struct {
	Filter sqlstore.AuditFilter
	// actions are the actions whose AuditEvent.type is one of the type values; nil: any.
	actions map[Action]bool
	// entity is a reference that must be among the AuditEvent's entities; empty: any.
	entity string
}

// auditTypeSystems are the systems of AuditEvent.type codes.
var auditTypeSystems = map[string]bool{systemAuditType: true, systemDCM: true}

// ParseSearch maps AuditEvent search parameters to a Search; unknown parameters are an error.
func ParseSearch(q url.Values) (Search, error) {
	rest := url.Values{}
	var s Search
	for name, vals := range q {
		switch name {
		case "type":
			if len(vals) > 1 {
				return s, fmt.Errorf("audit: search parameter type given more than once (use a comma for several values)")
			}
			s.actions = map[Action]bool{}
			for v := range strings.SplitSeq(vals[0], ",") {
				system, code, ok := strings.Cut(v, "|")
				if !ok {
					system, code = "", v
				}
				if system != "" && !auditTypeSystems[system] {
					return s, fmt.Errorf("audit: type system %q is not one this server records", system)
				}
				n := len(s.actions)
				for a := range restActions {
					if code == "rest" && (system == "" || system == systemAuditType) {
						s.actions[a] = true
					}
				}
				for a, info := range securityActions {
					if code == info.typ.Code && (system == "" || system == info.typ.System) {
						s.actions[a] = true
					}
				}
				if len(s.actions) == n && code != "rest" {
					return s, fmt.Errorf("audit: type %q is not one this server records (rest, 110114, 110113)", v)
				}
			}
		case "entity":
			if len(vals) > 1 {
				return s, fmt.Errorf("audit: search parameter entity given more than once")
			}
			typ, id, ok := strings.Cut(vals[0], "/")
			if !ok || typ == "" || id == "" || strings.Contains(id, "/") {
				return s, fmt.Errorf("audit: entity must be a reference Type/id")
			}
			if typ == "Patient" && q.Get("patient") == "" {
				rest.Set("patient", id) // indexed
			} else {
				s.entity = vals[0]
			}
		default:
			rest[name] = vals
		}
	}
	f, err := FilterFromQuery(rest)
	if err != nil {
		return s, err
	}
	s.Filter = f
	return s, nil
}

// Match reports whether an entry read with s.Filter also meets the unindexed conditions.
func (s Search) Match(e sqlstore.AuditEntry) bool {
	if s.actions != nil && !s.actions[Action(e.Action)] {
		return false
	}
	if s.entity != "" && !hasEntity(e.Event, s.entity) {
		return false
	}
	return true
}

// unindexed reports whether Match can reject entries.
func (s Search) unindexed() bool { return s.actions != nil || s.entity != "" }

// hasEntity reports whether the AuditEvent lists ref (or a version of it) among its entities.
func hasEntity(ae []byte, ref string) bool {
	if !bytes.Contains(ae, []byte(`"`+ref)) {
		return false
	}
	var v struct {
		Entity []struct {
			What struct {
				Reference string `json:"reference"`
			} `json:"what"`
		} `json:"entity"`
	}
	if json.Unmarshal(ae, &v) != nil {
		return false
	}
	for _, en := range v.Entity {
		if r := en.What.Reference; r == ref || strings.HasPrefix(r, ref+"/_history/") {
			return true
		}
	}
	return false
}

// ListFunc reads one page of entries; *sqlstore.Store's ListAuditEntries is one.
type ListFunc func(ctx context.Context, f sqlstore.AuditFilter) ([]sqlstore.AuditEntry, error)

// maxScanPages bounds the store pages one search page reads while unindexed conditions reject
// entries: the page then comes back short with a next link to continue from.
const maxScanPages = 20

// Page runs the search for one page: entries that Match and that keep accepts (the caller's
// visibility check), at most s.Filter.Limit (100 when zero). cursor, when not zero, is the
// _cursor of the next page: the store's keyset position after the last entry read.
func (s Search) Page(ctx context.Context, list ListFunc, keep func(sqlstore.AuditEntry) bool) (out []sqlstore.AuditEntry, cursor int64, err error) {
	f := s.Filter
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	want := f.Limit
	for range maxScanPages {
		page, err := list(ctx, f)
		if err != nil {
			return nil, 0, err
		}
		for i, e := range page {
			if s.Match(e) && (keep == nil || keep(e)) {
				out = append(out, e)
				if len(out) == want {
					if i < len(page)-1 || len(page) == f.Limit {
						cursor = e.Seq
					}
					return out, cursor, nil
				}
			}
		}
		if len(page) < f.Limit {
			return out, 0, nil
		}
		f.Cursor = page[len(page)-1].Seq
		if !s.unindexed() && keep == nil {
			break
		}
	}
	return out, f.Cursor, nil
}
