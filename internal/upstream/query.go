package upstream

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
)

// encodeParams writes the search parameters of q (its clauses, the policy's narrowing among
// them, page size, sort, includes and the modes a backend must honour) as FHIR query
// parameters. _summary other than count and _elements are left out: the FHIR API applies them
// after the response filter has seen the whole resource.
func encodeParams(q *search.Query) (url.Values, error) {
	v := url.Values{}
	for _, c := range q.Clauses {
		key, val, err := clauseParam(c)
		if err != nil {
			return nil, err
		}
		v.Add(key, val)
	}
	if q.Count > 0 {
		v.Set("_count", strconv.Itoa(q.Count))
	}
	if len(q.Sort) > 0 {
		keys := make([]string, 0, len(q.Sort))
		for _, s := range q.Sort {
			if s.Param == nil {
				return nil, errors.New("upstream: a sort key without a parameter")
			}
			k := s.Param.Code
			if s.Desc {
				k = "-" + k
			}
			keys = append(keys, k)
		}
		v.Set("_sort", strings.Join(keys, ","))
	}
	for _, inc := range q.Includes {
		v.Add(includeKey("_include", inc), includeValue(inc))
	}
	for _, inc := range q.RevIncludes {
		v.Add(includeKey("_revinclude", inc), includeValue(inc))
	}
	if q.Summary == search.SummaryCount {
		v.Set("_summary", search.SummaryCount)
	}
	if q.Total != "" {
		v.Set("_total", q.Total)
	}
	return v, nil
}

func includeKey(name string, inc search.Include) string {
	if inc.Iterate {
		return name + ":iterate"
	}
	return name
}

func includeValue(inc search.Include) string {
	if inc.Type == "" {
		return "*"
	}
	s := inc.Type + ":"
	if inc.Param == nil {
		return s + "*"
	}
	s += inc.Param.Code
	if inc.Target != "" {
		s += ":" + inc.Target
	}
	return s
}

// clauseParam is the query parameter of one clause: a plain test, a chain or a _has.
func clauseParam(c search.Clause) (key, value string, err error) {
	switch {
	case c.Reverse != nil:
		if c.Reverse.Param == nil {
			return "", "", errors.New("upstream: a _has clause without its reference parameter")
		}
		if len(c.Reverse.Filter) > 0 {
			return "", "", errChainFilter
		}
		inner, val, err := clauseParam(c.Reverse.Clause)
		if err != nil {
			return "", "", err
		}
		return "_has:" + c.Reverse.Type + ":" + c.Reverse.Param.Code + ":" + inner, val, nil
	case c.Param == nil:
		return "", "", errors.New("upstream: a clause without a parameter")
	case c.Chain != nil:
		if len(c.Chain.Filter) > 0 {
			return "", "", errChainFilter
		}
		inner, val, err := clauseParam(c.Chain.Clause)
		if err != nil {
			return "", "", err
		}
		return c.Param.Code + ":" + c.Chain.Type + "." + inner, val, nil
	}
	key = c.Param.Code
	if c.Modifier != "" {
		key += ":" + c.Modifier
	}
	if len(c.Values) == 0 {
		return "", "", errors.New("upstream: a clause without values")
	}
	vals := make([]string, 0, len(c.Values))
	for _, v := range c.Values {
		vals = append(vals, escapeValue(v.Raw))
	}
	return key, strings.Join(vals, ","), nil
}

// errChainFilter refuses a chain or _has that the policy narrowed on its targets (security
// labels, Consents): FHIR search parameters cannot say "only through the targets that pass
// these clauses", and sending the chain without them would let it probe hidden resources
// that the response filter never sees. Search resolves such links first (chains.go); what
// reaches the encoding unresolved (a conditional create's If-None-Exist) is refused.
var errChainFilter = fhir.Errorf(http.StatusBadRequest, "not-supported",
	"chained search through security-labelled or Consent-restricted resources is not supported in proxy mode")

// escapeValue escapes what FHIR search values escape: "\," keeps a comma inside one value.
func escapeValue(s string) string {
	if !strings.ContainsAny(s, `\,`) {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(s)
}

// cursor is where a search continues: the type of a per-type compartment search and the
// upstream's next link. It travels inside the FHIR API's signed page token, so a client can
// neither read nor edit it.
type cursor struct {
	// Type is the index in Query.Types of the type being paged (per-type searches only).
	Type int `json:"t,omitempty"`
	// Next is the upstream's next link; empty to start Type's search.
	Next string `json:"u,omitempty"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Type < 0 {
		return cursor{}, fhir.Invalid("_page", "the page link is not valid for this search; start the search again")
	}
	return c, nil
}

// nextOnBase checks that an upstream link is on the upstream's base and rebuilds it on the
// configured scheme and host (an upstream behind a load balancer may write its own public name).
func (b *Backend) nextOnBase(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil || (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") {
		return "", upstreamFailed("the upstream FHIR server sent a paging link that is not a URL")
	}
	path := u.Path
	if !u.IsAbs() && !strings.HasPrefix(path, "/") {
		// A relative link is relative to the base.
		path = b.base.Path + "/" + path
	}
	if path != b.base.Path && !strings.HasPrefix(path, b.base.Path+"/") {
		return "", upstreamFailed("the upstream FHIR server sent a paging link off its FHIR base")
	}
	out := *b.base
	out.Path = path
	out.RawPath = ""
	out.RawQuery = u.RawQuery
	return out.String(), nil
}

func upstreamFailed(msg string) *fhir.Error {
	return fhir.Errorf(http.StatusBadGateway, "transient", "%s", msg)
}
