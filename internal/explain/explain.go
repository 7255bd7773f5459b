package explain

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// Path is where the lead mounts the handler on the admin mux.
const Path = "/admin/policy/explain"

// Verifier verifies an access token (authn.Verifier).
type Verifier interface {
	Verify(ctx context.Context, token string) (*authn.Principal, error)
}

// Policy decides one request (policy.Engine).
type Policy interface {
	Evaluate(ctx context.Context, in policy.Input) (policy.Decision, error)
}

// Config builds the handler. Verifier, Policy, Registry and BaseURL are required; AdminToken is
// the admin API's bearer token, without which every request is refused (the endpoint accepts
// what-if claims and must never be public).
type Config struct {
	Verifier Verifier
	Policy   Policy
	Registry *search.Registry
	// BaseURL is the FHIR base ({base_url}/fhir); request URLs are read relative to it.
	BaseURL string
	// AdminToken is compared in constant time with the request's bearer token.
	AdminToken string
}

// maxBody bounds a request (a token, claims and at most two resource bodies).
const maxBody = 1 << 20

// Request is the JSON body of POST /admin/policy/explain. Exactly one of Token and Claims may be
// set; neither explains a request without a token.
type Request struct {
	Token  string         `json:"token,omitempty"`
	Claims map[string]any `json:"claims,omitempty"`
	Method string         `json:"method"`
	// URL is absolute on the FHIR base, a path under it (/fhir/Observation?x=y), or relative to
	// it (Observation?x=y).
	URL string `json:"url"`
	// Form is the form-encoded body of POST [type]/_search.
	Form string `json:"form,omitempty"`
	// Resource is the body sent (create, update) or the stored body of a read to check.
	Resource json.RawMessage `json:"resource,omitempty"`
	// Current is the stored body before an update or delete.
	Current json.RawMessage `json:"current,omitempty"`
}

// Answer is the JSON response.
type Answer struct {
	// WhatIf is true when the principal was built from raw claims: nothing was verified, and
	// no real token need have these claims.
	WhatIf         bool            `json:"what_if"`
	Principal      *Principal      `json:"principal,omitempty"`
	Authentication *Authentication `json:"authentication,omitempty"`
	Request        Interaction     `json:"request"`
	Decision       Decision        `json:"decision"`
	Narrowing      *Narrowing      `json:"narrowing,omitempty"`
	// Status is what the FHIR API would answer before touching data: the decision's status,
	// or 403 when the narrowing cannot be applied to this request.
	Status int `json:"status"`
	// Notes say what the FHIR API checks later, at request time.
	Notes    []string `json:"notes,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// Released is, for an allowed read of a given resource, the body the client would get:
	// the resource redacted (policy.labels.redact) when Redacted is true.
	Released json.RawMessage `json:"released,omitempty"`
	Redacted bool            `json:"redacted,omitempty"`
}

// Principal is who the decision was made for (never the token itself).
type Principal struct {
	Source        string   `json:"source"` // "token", "claims (what-if, unverified)"
	Subject       string   `json:"sub,omitempty"`
	ClientID      string   `json:"client_id,omitempty"`
	Patient       string   `json:"patient,omitempty"`
	FHIRUser      string   `json:"fhirUser,omitempty"`
	Scopes        []string `json:"scopes"`
	DroppedScopes []string `json:"dropped_scopes,omitempty"`
}

// Authentication reports a token that did not verify.
type Authentication struct {
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Interaction is the policy.Input the FHIR API would build, in words.
type Interaction struct {
	Method      string   `json:"method"`
	Path        string   `json:"path"`
	Interaction string   `json:"interaction"`
	Type        string   `json:"type,omitempty"`
	ID          string   `json:"id,omitempty"`
	Operation   string   `json:"operation,omitempty"`
	Compartment string   `json:"compartment,omitempty"`
	Types       []string `json:"types,omitempty"`
	// Query is the parsed search, one clause per entry, as query strings.
	Query []string `json:"query,omitempty"`
}

// Decision is a policy.Decision in words.
type Decision struct {
	Allow    bool     `json:"allow"`
	Status   int      `json:"status"`
	Reasons  []string `json:"reasons"`
	NotFound bool     `json:"not_found,omitempty"`
	Detail   string   `json:"detail,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Narrowing is what the decision adds to the query.
type Narrowing struct {
	Compartment string              `json:"compartment,omitempty"`
	Types       []string            `json:"types,omitempty"`
	Clauses     map[string][]string `json:"clauses,omitempty"`
	// Query is the search as the backend would run it: the request's clauses and the
	// narrowing's, as query strings.
	Query []string `json:"query,omitempty"`
	// Refused is why the narrowing cannot be applied (the FHIR API then answers 403).
	Refused string `json:"refused,omitempty"`
}

type handler struct {
	cfg    Config
	digest [32]byte
	base   string // path of the FHIR base, e.g. /fhir
}

// New builds the handler. A configuration without a verifier, policy, registry, base URL or admin
// token gives a handler that refuses every request (503), never one that answers unchecked.
func New(cfg Config) http.Handler {
	h := &handler{cfg: cfg, digest: sha256.Sum256([]byte(cfg.AdminToken))}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	h.cfg.BaseURL = cfg.BaseURL
	if u, err := url.Parse(cfg.BaseURL); err == nil {
		h.base = strings.TrimRight(u.Path, "/")
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Verifier == nil || h.cfg.Policy == nil || h.cfg.Registry == nil || h.cfg.BaseURL == "" || h.cfg.AdminToken == "" {
		writeError(w, http.StatusServiceUnavailable, "the policy explain endpoint is not configured")
		return
	}
	if !h.admin(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="fhirgate-admin"`)
		writeError(w, http.StatusUnauthorized, "a valid admin bearer token is required")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "POST a JSON explain request")
		return
	}
	var req Request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "the body is not an explain request: "+err.Error())
		return
	}
	ans, status, err := h.explain(r.Context(), &req)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (h *handler) admin(r *http.Request) bool {
	hdr := r.Header.Get("Authorization")
	tok := ""
	if len(hdr) > 7 && strings.EqualFold(hdr[:7], "bearer ") {
		tok = strings.TrimSpace(hdr[7:])
	}
	d := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(d[:], h.digest[:]) == 1
}

// explain answers one request; the error is a request the FHIR API would not take at all.
func (h *handler) explain(ctx context.Context, req *Request) (*Answer, int, error) {
	if req.Token != "" && req.Claims != nil {
		return nil, http.StatusBadRequest, errors.New("give a token or what-if claims, not both")
	}
	ans := &Answer{}
	var p *authn.Principal
	switch {
	case req.Token != "":
		var err error
		p, err = h.cfg.Verifier.Verify(ctx, strings.TrimSpace(req.Token))
		if err != nil {
			status, _ := authn.Challenge("fhirgate", err)
			ans.Authentication = &Authentication{Status: status, Error: err.Error()}
			p = nil
		} else {
			ans.Authentication = &Authentication{OK: true, Status: http.StatusOK}
		}
	case req.Claims != nil:
		var err error
		p, err = h.principalFromClaims(req.Claims)
		if err != nil {
			return nil, http.StatusBadRequest, err
		}
		ans.WhatIf = true
	}
	if p != nil {
		ans.Principal = describePrincipal(p, ans.WhatIf)
	}
	in, err := h.input(req)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	in.Input.Principal = p
	ans.Request = in.describe()
	ans.Warnings = in.warnings
	if ans.Authentication != nil && !ans.Authentication.OK {
		// The FHIR API answers before it asks the policy.
		ans.Decision = Decision{Status: ans.Authentication.Status, Reasons: []string{}, Error: "the token did not verify: " + ans.Authentication.Error}
		ans.Status = ans.Authentication.Status
		return ans, 0, nil
	}
	d, evalErr := h.cfg.Policy.Evaluate(ctx, in.Input)
	ans.Decision = Decision{Allow: d.Allow, Status: d.Status(), NotFound: d.NotFound, Detail: d.Detail, Reasons: []string{}}
	for _, r := range d.Reasons {
		ans.Decision.Reasons = append(ans.Decision.Reasons, string(r))
	}
	ans.Status = ans.Decision.Status
	if evalErr != nil {
		ans.Decision.Allow = false
		ans.Decision.Error = evalErr.Error()
		ans.Status = http.StatusInternalServerError
		return ans, 0, nil
	}
	if !d.Allow {
		return ans, 0, nil
	}
	ans.Narrowing = h.narrowing(in, d, ans)
	ans.Notes = in.notes(d, req)
	if in.Resource != nil && (in.Interaction == policy.Read || in.Interaction == policy.VRead) {
		out, redacted, why := d.Filter.Release(in.Type, in.Resource)
		if why != "" {
			ans.Decision.Allow, ans.Status = false, d.RefusedStatus()
			ans.Decision.Reasons = append(ans.Decision.Reasons, string(why))
		} else {
			ans.Released, ans.Redacted = out, redacted
		}
	}
	return ans, 0, nil
}

// principalFromClaims builds a what-if principal from claims named as in an access token.
func (h *handler) principalFromClaims(raw map[string]any) (*authn.Principal, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var c struct {
		Issuer    string   `json:"iss"`
		Subject   string   `json:"sub"`
		ClientID  string   `json:"client_id"`
		Scope     string   `json:"scope"`
		Patient   string   `json:"patient"`
		Encounter string   `json:"encounter"`
		FHIRUser  string   `json:"fhirUser"`
		Roles     []string `json:"roles"`
		// The security claims, as the authorization server writes them (docs §3.9–3.12).
		Clearance    *authn.Clearance  `json:"clearance"`
		PurposeOfUse []string          `json:"purpose_of_use"`
		BreakGlass   *authn.BreakGlass `json:"break_glass"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, errors.New("claims: " + err.Error())
	}
	if c.Clearance != nil && authn.ConfidentialityRank(c.Clearance.Confidentiality) < 0 {
		return nil, errors.New("claims: clearance.confidentiality must be one of U, L, M, N, R, V")
	}
	scopes, dropped := smart.ParseScopes(c.Scope)
	return &authn.Principal{
		Issuer: c.Issuer, Subject: c.Subject, ClientID: c.ClientID,
		FHIRUser: strings.TrimPrefix(c.FHIRUser, h.cfg.BaseURL+"/"),
		Patient:  c.Patient, Encounter: c.Encounter, Scopes: scopes, DroppedScopes: dropped, Roles: c.Roles,
		Clearance: c.Clearance, PurposeOfUse: c.PurposeOfUse, BreakGlass: c.BreakGlass,
	}, nil
}

func describePrincipal(p *authn.Principal, whatIf bool) *Principal {
	out := &Principal{Source: "token", Subject: p.Subject, ClientID: p.ClientID, Patient: p.Patient, FHIRUser: p.FHIRUser, Scopes: []string{}, DroppedScopes: p.DroppedScopes}
	if whatIf {
		out.Source = "claims (what-if, unverified)"
	}
	for _, s := range p.Scopes {
		out.Scopes = append(out.Scopes, s.String())
	}
	return out
}

// parsed is the request as the FHIR API would see it.
type parsed struct {
	policy.Input
	method, path string
	warnings     []string
}

func (p *parsed) describe() Interaction {
	out := Interaction{Method: p.method, Path: p.path, Interaction: string(p.Interaction), Type: p.Type, ID: p.ID, Operation: p.Operation}
	if q := p.Query; q != nil {
		if q.Compartment != nil {
			out.Compartment = q.Compartment.Type + "/" + q.Compartment.ID
		}
		out.Types = q.Types
		out.Query = Clauses(q.Clauses)
	}
	return out
}

// input maps method and URL to the policy.Input, following the FHIR API's routes.
func (h *handler) input(req *Request) (*parsed, error) {
	method := strings.ToUpper(strings.TrimSpace(req.Method))
	if method == "" {
		method = http.MethodGet
	}
	rel, params, err := h.relative(req.URL)
	if err != nil {
		return nil, err
	}
	p := &parsed{method: method, path: h.base + "/" + rel}
	var seg []string
	if rel != "" {
		seg = strings.Split(rel, "/")
	}
	body := []byte(req.Resource)
	p.Resource, p.Current = body, []byte(req.Current)
	if len(p.Current) == 0 {
		p.Current = nil
	}
	if len(p.Resource) == 0 {
		p.Resource = nil
	}
	doSearch := func(in policy.Interaction, types []string, comp *search.CompartmentRef, params url.Values) error {
		q, warnings, err := h.parse(types, params)
		if err != nil {
			return err
		}
		q.Compartment = comp
		p.Interaction, p.Query, p.warnings = in, q, warnings
		if in != policy.SearchSystem {
			p.Type = types[0]
		}
		return nil
	}
	n := len(seg)
	switch {
	case n == 0 && method == http.MethodGet:
		var types []string
		for _, v := range params["_type"] {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t == "" {
					continue
				}
				if !fhir.IsResourceType(t) {
					return nil, errors.New("_type " + t + " is not a FHIR R4 resource type (the FHIR API answers 400)")
				}
				types = append(types, t)
			}
		}
		err = doSearch(policy.SearchSystem, types, nil, params)
	case n == 0 && method == http.MethodPost:
		return nil, errors.New("a batch or transaction Bundle is decided entry by entry: explain each entry's method and url")
	case n == 1 && seg[0] == "metadata" && method == http.MethodGet:
		p.Interaction = policy.Capabilities
	case n == 1 && seg[0] == "_history" && method == http.MethodGet:
		p.Interaction = policy.HistorySystem
	case n == 1 && method == http.MethodGet:
		err = checkType(seg[0])
		if err == nil {
			err = doSearch(policy.SearchType, seg[:1], nil, params)
		}
	case n == 1 && method == http.MethodPost:
		if err = checkType(seg[0]); err == nil {
			p.Interaction, p.Type = policy.Create, seg[0]
		}
	case n == 2 && seg[1] == "_search" && method == http.MethodPost:
		if err = checkType(seg[0]); err == nil {
			form, ferr := url.ParseQuery(req.Form)
			if ferr != nil {
				return nil, errors.New("form: " + ferr.Error())
			}
			for k, vs := range params {
				form[k] = append(form[k], vs...)
			}
			err = doSearch(policy.SearchType, seg[:1], nil, form)
		}
	case n == 2 && seg[1] == "_history" && method == http.MethodGet:
		if err = checkType(seg[0]); err == nil {
			p.Interaction, p.Type = policy.HistoryType, seg[0]
		}
	case n == 2 && strings.HasPrefix(seg[1], "$"):
		if err = checkType(seg[0]); err == nil {
			p.Interaction, p.Type, p.Operation = policy.Operation, seg[0], seg[1]
		}
	case n == 2:
		if err = checkInstance(seg[0], seg[1]); err != nil {
			break
		}
		p.Type, p.ID = seg[0], seg[1]
		switch method {
		case http.MethodGet:
			p.Interaction = policy.Read
		case http.MethodPut:
			p.Interaction = policy.Update
		case http.MethodPatch:
			p.Interaction = policy.Patch
		case http.MethodDelete:
			p.Interaction = policy.Delete
		default:
			err = errors.New(method + " is not a FHIR interaction on " + seg[0] + "/[id]")
		}
	case n == 3 && seg[2] == "_history" && method == http.MethodGet:
		if err = checkInstance(seg[0], seg[1]); err == nil {
			p.Interaction, p.Type, p.ID = policy.HistoryInstance, seg[0], seg[1]
		}
	case n == 3 && seg[0] == "Patient" && seg[2] == "$everything" && method == http.MethodGet:
		if err = checkInstance(seg[0], seg[1]); err == nil {
			p.Interaction, p.Type, p.ID, p.Operation = policy.Operation, "Patient", seg[1], "$everything"
		}
	case n == 3 && method == http.MethodGet:
		if err = checkInstance(seg[0], seg[1]); err != nil {
			break
		}
		if seg[0] != "Patient" {
			err = errors.New("only the Patient compartment is supported (the FHIR API answers 404)")
			break
		}
		if err = checkType(seg[2]); err == nil {
			err = doSearch(policy.SearchCompartment, seg[2:3], &search.CompartmentRef{Type: "Patient", ID: seg[1]}, params)
		}
	case n == 4 && seg[2] == "_history" && method == http.MethodGet:
		if err = checkInstance(seg[0], seg[1]); err == nil {
			p.Interaction, p.Type, p.ID = policy.VRead, seg[0], seg[1]
		}
	default:
		err = errors.New(method + " " + p.path + " is not a FHIR interaction the FHIR API serves (it answers 404)")
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// relative reads the URL as a path under the FHIR base and its query.
func (h *handler) relative(raw string) (string, url.Values, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", nil, errors.New("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", nil, errors.New("url: " + err.Error())
	}
	path := u.Path
	switch {
	case u.IsAbs():
		base, _ := url.Parse(h.cfg.BaseURL)
		if base == nil || !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host) {
			return "", nil, errors.New("url is not on this FHIR base " + h.cfg.BaseURL)
		}
		fallthrough
	case strings.HasPrefix(path, "/"):
		rest, ok := strings.CutPrefix(path, h.base)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			return "", nil, errors.New("url is not under the FHIR base path " + h.base)
		}
		path = rest
	}
	params, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", nil, errors.New("url query: " + err.Error())
	}
	return strings.Trim(path, "/"), params, nil
}

func (h *handler) parse(types []string, params url.Values) (*search.Query, []string, error) {
	q, warnings, err := search.Parse(h.cfg.Registry, types, params, search.ParseOptions{BaseURL: h.cfg.BaseURL})
	if err != nil {
		status, _ := fhir.OutcomeFromError(err)
		return nil, nil, errors.New("the search does not parse (the FHIR API answers " + http.StatusText(status) + "): " + err.Error())
	}
	return q, warnings, nil
}

func checkType(t string) error {
	if !fhir.IsResourceType(t) {
		return errors.New(t + " is not a FHIR R4 resource type (the FHIR API answers 404)")
	}
	return nil
}

func checkInstance(t, id string) error {
	if err := checkType(t); err != nil {
		return err
	}
	if !fhir.ValidID(id) {
		return errors.New(id + " is not a valid resource id (the FHIR API answers 400)")
	}
	return nil
}

// narrowing describes the decision's narrowing and applies it as the FHIR API does.
func (h *handler) narrowing(in *parsed, d policy.Decision, ans *Answer) *Narrowing {
	n := d.Narrowing
	out := &Narrowing{}
	if n != nil {
		if n.Compartment != nil {
			out.Compartment = n.Compartment.Type + "/" + n.Compartment.ID
		}
		out.Types = slices.Clone(n.Types)
		if len(n.Clauses) > 0 {
			out.Clauses = map[string][]string{}
			for t, cl := range n.Clauses {
				out.Clauses[t] = Clauses(cl)
			}
		}
	}
	switch in.Interaction {
	case policy.SearchType, policy.SearchSystem, policy.SearchCompartment:
		if err := n.Narrow(in.Query); err != nil {
			out.Refused = err.Error()
			ans.Status = http.StatusForbidden
		}
		out.Query = Clauses(in.Query.Clauses)
		if in.Query.Compartment != nil && out.Compartment == "" {
			out.Compartment = in.Query.Compartment.Type + "/" + in.Query.Compartment.ID
		}
		if out.Types == nil && n != nil && n.Types != nil {
			out.Types = slices.Clone(in.Query.Types)
		}
	case policy.HistoryType, policy.HistorySystem:
		if n != nil {
			out.Refused = "type and system history cannot be bounded to a patient or to granular scopes"
			ans.Status = http.StatusForbidden
		}
	}
	if n == nil && out.Query == nil && out.Refused == "" {
		return nil
	}
	return out
}

func (p *parsed) notes(d policy.Decision, req *Request) []string {
	var out []string
	switch p.Interaction {
	case policy.Read, policy.VRead, policy.HistoryInstance:
		if len(req.Resource) == 0 {
			out = append(out, "the stored resource is checked at request time against the token's compartment and granular scopes; one outside them answers 404 (pass it as \"resource\" to check it here)")
		}
	case policy.Update, policy.Patch, policy.Delete:
		if len(req.Current) == 0 {
			out = append(out, "the stored resource is checked at request time; one outside the token's access answers 404 (pass it as \"current\" to check it here)")
		}
	case policy.SearchType, policy.SearchSystem, policy.SearchCompartment, policy.Operation:
		out = append(out, "every returned resource, _include and _revinclude entries too, passes the response filter: compartment and scopes of its own type")
	}
	if d.Narrowing != nil && d.Narrowing.Compartment != nil {
		out = append(out, "every page is bounded to "+d.Narrowing.Compartment.Type+"/"+d.Narrowing.Compartment.ID+" again; a page link carries no authorization")
	}
	return out
}

// Clauses writes search clauses as query strings (key=value, values ORed with ',').
func Clauses(cs []search.Clause) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, Clause(c))
	}
	return out
}

// Clause writes one search clause as a query string: subject:Patient.name=x,
// _has:Observation:patient:code=y, category=http://sys|code. The policy's filters on the
// targets of a chain or _has follow in brackets, link by link:
// subject:Patient.name=x [Patient: _security:not=...].
func Clause(c search.Clause) string {
	key, leaf := clauseKey(c)
	vals := make([]string, 0, len(leaf.Values))
	for _, v := range leaf.Values {
		vals = append(vals, strings.ReplaceAll(strings.ReplaceAll(v.Raw, `\`, `\\`), ",", `\,`))
	}
	s := key + "=" + strings.Join(vals, ",")
	if f := chainFilters(c); len(f) > 0 {
		s += " [" + strings.Join(f, "; ") + "]"
	}
	return s
}

// chainFilters describes the Filter of each link of a chain or _has ("Type: clause & clause").
func chainFilters(c search.Clause) []string {
	var out []string
	for {
		var typ string
		var filter []search.Clause
		switch {
		case c.Chain != nil:
			typ, filter, c = c.Chain.Type, c.Chain.Filter, c.Chain.Clause
		case c.Reverse != nil:
			typ, filter, c = c.Reverse.Type, c.Reverse.Filter, c.Reverse.Clause
		default:
			return out
		}
		if len(filter) > 0 {
			out = append(out, typ+": "+strings.Join(Clauses(filter), " & "))
		}
	}
}

func clauseKey(c search.Clause) (string, search.Clause) {
	switch {
	case c.Reverse != nil:
		code := "?"
		if c.Reverse.Param != nil {
			code = c.Reverse.Param.Code
		}
		inner, leaf := clauseKey(c.Reverse.Clause)
		return "_has:" + c.Reverse.Type + ":" + code + ":" + inner, leaf
	case c.Chain != nil:
		inner, leaf := clauseKey(c.Chain.Clause)
		return paramCode(c) + ":" + c.Chain.Type + "." + inner, leaf
	}
	key := paramCode(c)
	if c.Modifier != "" {
		key += ":" + c.Modifier
	}
	return key, c
}

func paramCode(c search.Clause) string {
	if c.Param == nil {
		return "?"
	}
	return c.Param.Code
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
