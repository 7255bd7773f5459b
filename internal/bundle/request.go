package bundle

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// target is what an entry's request.url addresses.
type target struct {
	Type string
	ID   string
	// Version is the n of Type/id/_history/n; 0 when absent.
	Version int64
	// Query holds the parameters after '?' (conditional criteria or a search).
	Query url.Values
	// HasQuery is true when the URL had a '?'.
	HasQuery bool
}

// parseRequestURL reads an entry's request.url: relative to the FHIR base ("Patient/1",
// "Patient?identifier=x|1"), or absolute on base.
func parseRequestURL(raw, base string) (target, error) {
	var t target
	s := strings.TrimSpace(raw)
	if s == "" {
		return t, fhir.Invalid("request.url", "request.url is missing")
	}
	if p, _, _ := strings.Cut(s, "?"); strings.Contains(p, "://") {
		b := strings.TrimRight(base, "/")
		if b == "" || !strings.HasPrefix(s, b+"/") {
			return t, fhir.Invalid("request.url", "request.url %q is not on this server's base", raw)
		}
		s = s[len(b)+1:]
	}
	s = strings.TrimPrefix(s, "/")
	path, query, hasQuery := strings.Cut(s, "?")
	if strings.Contains(path, "#") || strings.Contains(query, "#") {
		return t, fhir.Invalid("request.url", "request.url %q must not have a fragment", raw)
	}
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return t, fhir.Invalid("request.url", "request.url %q has a malformed query: %v", raw, err)
		}
		t.Query, t.HasQuery = q, true
	}
	segs := strings.Split(path, "/")
	if !fhir.IsResourceType(segs[0]) {
		return t, fhir.Invalid("request.url", "request.url %q does not name a FHIR R4 resource type", raw)
	}
	t.Type = segs[0]
	switch len(segs) {
	case 1:
		return t, nil
	case 2, 4:
		if !fhir.ValidID(segs[1]) {
			return t, fhir.Invalid("request.url", "request.url %q has an invalid id", raw)
		}
		t.ID = segs[1]
		if len(segs) == 4 {
			v, err := strconv.ParseInt(segs[3], 10, 64)
			if segs[2] != "_history" || err != nil || v < 1 {
				return t, fhir.Invalid("request.url", "request.url %q is not Type/id/_history/version", raw)
			}
			t.Version = v
		}
		if hasQuery {
			return t, fhir.Invalid("request.url", "request.url %q mixes an id and search criteria", raw)
		}
		return t, nil
	}
	return t, fhir.Errorf(http.StatusBadRequest, "not-supported", "request.url %q is not an interaction fhirgate supports in a Bundle", raw)
}

// parseETag reads a version from an ETag or If-Match value: W/"3", "3" or 3.
func parseETag(s, element string) (int64, error) {
	v := strings.TrimSpace(s)
	v = strings.TrimPrefix(v, "W/")
	v = strings.TrimSuffix(strings.TrimPrefix(v, `"`), `"`)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fhir.Invalid(element, "%s %q is not a version ETag such as W/\"3\"", element, s)
	}
	return n, nil
}

// statusLine is "201 Created" for 201.
func statusLine(code int) string { return strconv.Itoa(code) + " " + http.StatusText(code) }

// location is Type/id/_history/v.
func location(r *fhir.Resource) string {
	return r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.VersionID, 10)
}
