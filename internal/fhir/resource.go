package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

// Resource is one version of a stored resource.
type Resource struct {
	Type        string
	ID          string
	VersionID   int64
	LastUpdated time.Time
	// Deleted marks a history entry that records a delete; Body is then empty.
	Deleted bool
	// Body is the resource JSON as served, with id and meta.versionId/lastUpdated set.
	Body json.RawMessage
}

// ETag is the weak entity tag of this version, W/"n".
func (r *Resource) ETag() string { return `W/"` + strconv.FormatInt(r.VersionID, 10) + `"` }

// Ref is Type/id.
func (r *Resource) Ref() string { return r.Type + "/" + r.ID }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9\-\.]{1,64}$`)

// ValidID reports whether id is a FHIR id: 1-64 of A-Z a-z 0-9 - and '.'.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// IsResourceType reports whether t is a FHIR R4 resource type.
func IsResourceType(t string) bool {
	_, ok := slices.BinarySearch(definitions.ResourceTypes, t)
	return ok
}

// ResourceTypes lists every R4 resource type in alphabetical order. The slice must not be modified.
func ResourceTypes() []string { return definitions.ResourceTypes }

// TimeFormat is how fhirgate writes instants: UTC with millisecond precision.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Header is the part of a resource that the server reads before it stores one.
type Header struct {
	ResourceType string `json:"resourceType"`
	ID           string `json:"id"`
}

// DecodeHeader reads resourceType and id from a JSON resource, rejecting anything that is not a
// single JSON object.
func DecodeHeader(body []byte) (Header, error) {
	var h Header
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return h, Invalid("", "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&h); err != nil {
		return h, Invalid("", "the body is not valid JSON: %v", err)
	}
	if dec.More() {
		return h, Invalid("", "the body holds more than one JSON value")
	}
	if h.ResourceType == "" {
		return h, Invalid("resourceType", "resourceType is missing")
	}
	if !IsResourceType(h.ResourceType) {
		return h, Invalid("resourceType", "%q is not a FHIR R4 resource type", h.ResourceType)
	}
	return h, nil
}

// Stamp returns body with id, meta.versionId and meta.lastUpdated set to the given values, keeping
// every other element (meta.security, meta.tag, meta.profile, ...) as sent.
func Stamp(body []byte, id string, version int64, updated time.Time) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, Invalid("", "the body is not a JSON object: %v", err)
	}
	meta := map[string]json.RawMessage{}
	if raw, ok := m["meta"]; ok {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, Invalid("meta", "meta must be an object")
		}
	}
	meta["versionId"] = mustJSON(strconv.FormatInt(version, 10))
	meta["lastUpdated"] = mustJSON(updated.UTC().Format(TimeFormat))
	m["id"] = mustJSON(id)
	m["meta"] = mustJSON(meta)
	return marshalOrdered(m)
}

// marshalOrdered writes resourceType and id first, as people expect to read them.
func marshalOrdered(m map[string]json.RawMessage) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "resourceType" && k != "id" && k != "meta" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	keys = append([]string{"resourceType", "id", "meta"}, keys...)
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			continue
		}
		if !first {
			buf.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("fhir: compact %s: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
