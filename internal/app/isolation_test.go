package app_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/fhirgate/fhirgate/internal/app"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/demo"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/policy"
)

// The differential isolation suite: patient A's tokens, obtained through the real
// authorization-code flow (login, consent, PKCE) for each scope shape, run every path of the FHIR
// API; the same query runs with a system/*.rs token and its result, filtered by hand to A's
// compartment and the scope, is what A's token must return: exactly that set, every page walked,
// and nothing of another patient. The oracle does not use the server's compartment code: a
// resource is A's when it is Patient/A or holds a reference to Patient/A.

const (
	patientA = demo.AlicePatientID
	patientB = demo.BobPatientID
	labCat   = "http://terminology.hl7.org/CodeSystem/observation-category"
)

// shape is a scope set for A's token and the hand-written rule of what it may see by type.
type shape struct {
	name  string
	scope string
	// allows reports whether the scope (not the compartment) lets the resource out.
	allows func(typ string, res map[string]any) bool
	// types the scope names at all ("" for every type).
	types []string
}

var shapes = []shape{
	{"patient/*.rs", "launch/patient patient/*.rs", func(string, map[string]any) bool { return true }, nil},
	{"patient/*.read (v1)", "launch/patient patient/*.read", func(string, map[string]any) bool { return true }, nil},
	{"patient/Observation.rs", "launch/patient patient/Observation.rs", func(t string, _ map[string]any) bool { return t == "Observation" }, []string{"Observation"}},
	{"patient/Observation.rs?category=laboratory", "launch/patient patient/Observation.rs?category=" + labCat + "|laboratory", func(t string, r map[string]any) bool {
		return t == "Observation" && hasCoding(r["category"], labCat, "laboratory")
	}, []string{"Observation"}},
	{"patient/Condition.rs patient/Patient.rs", "launch/patient patient/Condition.rs patient/Patient.rs", func(t string, _ map[string]any) bool {
		return t == "Condition" || t == "Patient"
	}, []string{"Condition", "Patient"}},
}

func hasCoding(v any, system, code string) bool {
	concepts, _ := v.([]any)
	for _, c := range concepts {
		cm, _ := c.(map[string]any)
		codings, _ := cm["coding"].([]any)
		for _, cd := range codings {
			m, _ := cd.(map[string]any)
			if m["system"] == system && m["code"] == code {
				return true
			}
		}
	}
	return false
}

// entry is one resource of a response.
type entry struct {
	key  string // Type/id
	typ  string
	mode string // match, include
	res  map[string]any
}

type server struct {
	t          *testing.T
	base, fhir string
	system     string
	compTypes  map[string]bool
	sharedType map[string]bool
	bob        string // B's patient/*.rs token, made once
	sysCache   map[string]result
	// admin is the admin API handler (nil without an admin address).
	admin http.Handler
	// proxied: the server is a proxy, whose upstream cuts a page at the include cap before the
	// proxy's response filter drops what the oracle may not see (patients' Consents), so a page
	// under the cap may still have been cut.
	proxied bool
}

// sysWalk is walk with the system token and the largest page size (the union of the pages does
// not depend on it), cached across shapes: the record does not change during the suite. Searches
// that may return AuditEvents, which every request adds to, are never cached.
func (s *server) sysWalk(rq request, fresh bool) result {
	s.t.Helper()
	key := rq.method + " " + rq.path + " " + rq.form
	if r, ok := s.sysCache[key]; ok && !fresh {
		return r
	}
	big := rq
	path, q, _ := strings.Cut(rq.path, "?")
	segs := strings.Split(strings.Trim(path, "/"), "/")
	read := (len(segs) == 2 && segs[1] != "_history" && segs[1] != "_search") || (len(segs) == 4 && segs[2] == "_history")
	if !read {
		v, _ := url.ParseQuery(q)
		if rq.method == "POST" {
			f, _ := url.ParseQuery(rq.form)
			f.Del("_count")
			v.Del("_count")
			f.Set("_count", "1000")
			big.form = f.Encode()
		} else {
			v.Set("_count", "1000")
		}
		big.path = path
		if len(v) > 0 {
			big.path += "?" + v.Encode()
		}
	}
	r := s.walk(big, s.system)
	if !fresh {
		s.sysCache[key] = r
	}
	return r
}

func newIsolationServer(t *testing.T) *server { return startIsolationServer(t, nil) }

// newServerWith is startIsolationServer under the name the security-label tests use.
func newServerWith(t *testing.T, mod func(*config.Config)) *server {
	t.Helper()
	return startIsolationServer(t, mod)
}

// startIsolationServer builds the server the suite runs against with the demo accounts (and,
// unless configure puts it in proxy mode, the demo data); configure adjusts the config, and an
// admin address it sets serves the admin API (token in env).
func startIsolationServer(t *testing.T, configure func(*config.Config)) *server {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := config.Default()
	cfg.BaseURL = base
	cfg.DataDir = t.TempDir()
	cfg.Demo = true
	cfg.DemoPatients = 20
	cfg.AdminAddr = ""
	// The suite sends hundreds of requests per patient: quotas are not what it tests.
	cfg.Gateway.RateLimit.Enabled = false
	// The oracle (the confidential demo client's system token) sees every security label, so
	// that only the compartment tells the two apart.
	cfg.Policy.Roles["records-oracle"] = config.Role{Clearance: config.Clearance{Confidentiality: "V", Sensitivity: []string{"*"}}}
	cfg.Policy.ClientRoles = map[string][]string{"demo-confidential": {"records-oracle"}}
	// The oracle's _revinclude=* answers stop at the include cap (1000 entries, types in
	// alphabetical order) before a Consent would appear: do not record authorisations here.
	cfg.Policy.Consent.RecordAuthorizations = false
	if configure != nil {
		configure(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FHIRGATE_ADMIN_TOKEN": testAdminToken}
	a, err := app.New(ctx, cfg, app.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if err := a.LoadDemo(ctx, io.Discard); err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = a.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	s := &server{t: t, admin: a.AdminHandler(), base: base, fhir: base + "/fhir", compTypes: map[string]bool{}, sharedType: map[string]bool{}, sysCache: map[string]result{}}
	s.proxied = cfg.Upstream.URL != ""
	for _, typ := range compartment.Patient().ResourceTypes() {
		s.compTypes[typ] = true
	}
	for _, typ := range policy.DefaultExtraCompartmentTypes {
		s.compTypes[typ] = true
	}
	for _, typ := range policy.DefaultSharedTypes {
		s.sharedType[typ] = true
	}
	s.system = s.clientCredentials()
	return s
}

func (s *server) clientCredentials() string {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.rs"}}
	req, _ := http.NewRequest("POST", s.base+"/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-confidential", "demo-confidential-secret-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != 200 || tok.AccessToken == "" || tok.Scope != "system/*.rs" {
		s.t.Fatalf("client_credentials = %d, scope %q", resp.StatusCode, tok.Scope)
	}
	return tok.AccessToken
}

// browser drives the authorization server's HTML pages with a cookie jar; it stops at the app.
type browser struct {
	s      *server
	c      *http.Client
	appURL string
	// authzError, when not nil, receives the error of an authorization that the server
	// refused (instead of failing the test).
	authzError *string
	// clientID is the public client that authorizes (default demo-app).
	clientID string
}

func (s *server) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{s: s, appURL: s.base + "/demo/app/"}
	b.c = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), b.appURL) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

type page struct {
	status int
	url    *url.URL
	body   string
	header http.Header
}

func (b *browser) do(req *http.Request) page {
	t := b.s.t
	t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, body: string(body), header: resp.Header}
}

// htmlForm is a POST form as a browser submits it: hidden inputs (the CSRF token among them),
// checked checkboxes and radios.
type htmlForm struct {
	action string
	fields url.Values
}

func (p page) forms() []htmlForm {
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		return nil
	}
	var out []htmlForm
	var walk func(n *html.Node, cur *htmlForm)
	walk = func(n *html.Node, cur *htmlForm) {
		if n.Type == html.ElementNode && n.Data == "form" {
			f := htmlForm{fields: url.Values{}}
			post := false
			for _, a := range n.Attr {
				switch a.Key {
				case "action":
					if u, err := url.Parse(a.Val); err == nil {
						f.action = p.url.ResolveReference(u).String()
					}
				case "method":
					post = strings.EqualFold(a.Val, "post")
				}
			}
			if post {
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c, &f)
				}
				out = append(out, f)
				return
			}
		}
		if cur != nil && n.Type == html.ElementNode && n.Data == "input" {
			attr := map[string]string{}
			checked := false
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
				checked = checked || a.Key == "checked"
			}
			switch attr["type"] {
			case "checkbox", "radio":
				if checked {
					cur.fields.Add(attr["name"], attr["value"])
				}
			case "submit":
			default:
				if attr["name"] != "" {
					cur.fields.Set(attr["name"], attr["value"])
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, cur)
		}
	}
	walk(doc, nil)
	return out
}

func (p page) form(part string) (htmlForm, bool) {
	for _, f := range p.forms() {
		if strings.Contains(f.action, part) {
			return f, true
		}
	}
	return htmlForm{}, false
}

// patientToken runs the SMART standalone launch for a demo patient user: authorize with PKCE,
// log in (once per browser), consent, exchange the code. It returns the token and the granted
// scope and patient.
func (b *browser) patientToken(user, password, scope string) (token, granted, patient string) {
	b.s.t.Helper()
	return b.userToken(user, password, scope, nil)
}

// userToken is patientToken with extra authorize parameters (purpose_of_use, break-glass).
func (b *browser) userToken(user, password, scope string, extra url.Values) (token, granted, patient string) {
	t := b.s.t
	t.Helper()
	vb := make([]byte, 32)
	_, _ = rand.Read(vb)
	verifier := base64.RawURLEncoding.EncodeToString(vb)
	sum := sha256.Sum256([]byte(verifier))
	clientID := cmp.Or(b.clientID, "demo-app")
	params := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {b.appURL}, "scope": {scope},
		"state": {"isolation-state-123"}, "aud": {b.s.fhir},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	for k, v := range extra {
		params[k] = v
	}
	req, _ := http.NewRequest("GET", b.s.base+"/auth/authorize?"+params.Encode(), nil)
	p := b.do(req)
	var code string
	for range 8 {
		if p.status == http.StatusFound || p.status == http.StatusSeeOther {
			loc, err := url.Parse(p.header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), b.appURL) {
				t.Fatalf("authorization redirected to %q", p.header.Get("Location"))
			}
			if e := loc.Query().Get("error"); e != "" && b.authzError != nil {
				*b.authzError = e
				return "", "", ""
			}
			if loc.Query().Get("state") != "isolation-state-123" || loc.Query().Get("code") == "" {
				t.Fatalf("authorization answered %s", loc)
			}
			code = loc.Query().Get("code")
			break
		}
		var f htmlForm
		var ok bool
		switch {
		case p.status != http.StatusOK && p.status != http.StatusUnauthorized:
			t.Fatalf("authorization page %d: %.500s", p.status, p.body)
		default:
			if f, ok = p.form("/login"); ok {
				f.fields.Set("username", user)
				f.fields.Set("password", password)
			} else if f, ok = p.form("/patient"); ok {
				f.fields.Set("patient", patientA)
			} else if f, ok = p.form("/consent"); ok {
				f.fields.Set("decision", "allow")
			} else {
				t.Fatalf("unexpected authorization page %d: %.1000s", p.status, p.body)
			}
		}
		req, _ := http.NewRequest("POST", f.action, strings.NewReader(f.fields.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		p = b.do(req)
	}
	if code == "" {
		t.Fatalf("authorization did not finish: %d %.500s", p.status, p.body)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {b.appURL}, "client_id": {clientID}, "code_verifier": {verifier}}
	resp, err := http.PostForm(b.s.base+"/auth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
		Patient     string `json:"patient"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	if resp.StatusCode != 200 || tok.AccessToken == "" {
		t.Fatalf("code exchange = %d", resp.StatusCode)
	}
	return tok.AccessToken, tok.Scope, tok.Patient
}

// response is one FHIR answer.
type response struct {
	status int
	body   map[string]any
	raw    string
}

func (s *server) do(method, path, token, contentType, body string) response {
	s.t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = s.fhir + path
	}
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

// request is one path of the API as a client sends it.
type request struct {
	method, path, form string
}

func (s *server) send(rq request, token string) response {
	if rq.method == "POST" {
		return s.do("POST", rq.path, token, "application/x-www-form-urlencoded", rq.form)
	}
	return s.do("GET", rq.path, token, "", "")
}

// result is every page of a search (or the one resource of a read).
type result struct {
	status  int
	matches map[string]entry
	include map[string]entry
	pages   int
	total   *float64
	raw     []string
}

// walk sends rq and follows every next link with the same token.
func (s *server) walk(rq request, token string) result {
	s.t.Helper()
	out := result{matches: map[string]entry{}, include: map[string]entry{}}
	r := s.send(rq, token)
	out.status = r.status
	for r.status == http.StatusOK {
		out.pages++
		out.raw = append(out.raw, r.raw)
		if out.pages > 200 {
			s.t.Fatalf("%s: more than 200 pages", rq.path)
		}
		if r.body["resourceType"] != "Bundle" {
			e := toEntry(r.body, "match")
			out.matches[e.key] = e
			return out
		}
		if out.pages == 1 {
			if tot, ok := r.body["total"].(float64); ok {
				out.total = &tot
			}
		}
		entries, _ := r.body["entry"].([]any)
		for _, x := range entries {
			em, _ := x.(map[string]any)
			res, _ := em["resource"].(map[string]any)
			if res == nil || res["resourceType"] == "OperationOutcome" {
				continue
			}
			mode := "match"
			if sm, ok := em["search"].(map[string]any); ok && sm["mode"] == "include" {
				mode = "include"
			}
			e := toEntry(res, mode)
			if mode == "match" {
				out.matches[e.key] = e
			} else {
				out.include[e.key] = e
			}
		}
		next := ""
		links, _ := r.body["link"].([]any)
		for _, l := range links {
			lm, _ := l.(map[string]any)
			if lm["relation"] == "next" {
				next, _ = lm["url"].(string)
			}
		}
		if next == "" {
			break
		}
		if !strings.HasPrefix(next, s.fhir+"/") && next != s.fhir && !strings.HasPrefix(next, s.fhir+"?") {
			s.t.Fatalf("%s: next link %q is not on this server", rq.path, next)
		}
		if rq.method == "POST" && strings.Contains(next, "/_search?") {
			// The FHIR API writes the next link of a POST _search on the _search path, which
			// only answers POST (a GET there reads the id "_search"): follow it as a client of
			// POST _search does, with the link's parameters as the form.
			path, form, _ := strings.Cut(next, "?")
			r = s.do("POST", path, token, "application/x-www-form-urlencoded", form)
		} else {
			r = s.do("GET", next, token, "", "")
		}
		if r.status != http.StatusOK {
			s.t.Fatalf("%s: page %d = %d %.300s", rq.path, out.pages+1, r.status, r.raw)
		}
	}
	return out
}

func toEntry(res map[string]any, mode string) entry {
	typ, _ := res["resourceType"].(string)
	id, _ := res["id"].(string)
	return entry{key: typ + "/" + id, typ: typ, mode: mode, res: res}
}

// patientRefs lists the Patient ids a resource is about: itself, or every reference to a Patient.
func patientRefs(e entry) map[string]bool {
	out := map[string]bool{}
	if e.typ == "Patient" {
		id, _ := e.res["id"].(string)
		out[id] = true
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if ref, ok := c.(string); ok && k == "reference" {
					if _, id, ok := strings.Cut(ref, "Patient/"); ok && (strings.HasPrefix(ref, "Patient/") || strings.Contains(ref, "/Patient/")) {
						out[strings.SplitN(id, "/", 2)[0]] = true
					}
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(e.res)
	return out
}

// refs lists the Type/id references a resource holds (relative or on this server).
func refs(e entry, fhirBase string) map[string]bool {
	out := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if ref, ok := c.(string); ok && k == "reference" {
					out[strings.TrimPrefix(ref, fhirBase+"/")] = true
					continue
				}
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(e.res)
	return out
}

// visible is the oracle: may A's token with shape sh see this resource?
func (s *server) visible(sh shape, e entry, everyTypeSearch bool) bool {
	if !sh.allows(e.typ, e.res) {
		return false
	}
	switch {
	case s.compTypes[e.typ]:
		return patientRefs(e)[patientA]
	case s.sharedType[e.typ]:
		// A system search without _type is narrowed to the compartment's types.
		return !everyTypeSearch
	}
	return false
}

// expected filters the system result by hand: the matches A may see, and the included resources
// A may see that are linked (by reference, either way, transitively) to what A sees.
func (s *server) expected(sh shape, sys result, everyTypeSearch bool) (matches, include map[string]bool) {
	matches, include = map[string]bool{}, map[string]bool{}
	seen := map[string]entry{}
	for k, e := range sys.matches {
		if s.visible(sh, e, everyTypeSearch) {
			matches[k] = true
			seen[k] = e
		}
	}
	cands := map[string]entry{}
	for k, e := range sys.include {
		if s.visible(sh, e, everyTypeSearch) && !matches[k] {
			cands[k] = e
		}
	}
	for changed := true; changed; {
		changed = false
		for k, c := range cands {
			if include[k] {
				continue
			}
			cr := refs(c, s.fhir)
			for mk, m := range seen {
				if cr[mk] || refs(m, s.fhir)[k] {
					include[k] = true
					seen[k] = c
					changed = true
					break
				}
			}
		}
	}
	return matches, include
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func entryKeys(m map[string]entry) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func diff(got, want map[string]bool) (extra, missing []string) {
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	return extra, missing
}

// noOtherPatient fails for any resource of another patient's compartment in A's answer, and for
// another patient's id anywhere in it.
func (s *server) noOtherPatient(t *testing.T, what string, r result) {
	t.Helper()
	for _, m := range []map[string]entry{r.matches, r.include} {
		for k, e := range m {
			for p := range patientRefs(e) {
				if p != patientA {
					t.Errorf("%s: %s of Patient/%s leaked to A", what, k, p)
				}
			}
		}
	}
	for _, raw := range r.raw {
		if strings.Contains(raw, "Patient/"+patientB) || strings.Contains(raw, `"`+patientB+`"`) {
			t.Errorf("%s: the answer names %s: %.300s", what, patientB, raw)
		}
	}
}

// query is one request of the suite. mayRefuse marks the shapes the policy refuses by design
// (fail closed: chains into compartment types, history, mixed _type) although the hand-filtered
// set is not empty; compartmentOnly marks a system search over every type.
type query struct {
	rq              request
	mayRefuse       bool
	compartmentOnly bool
	// needs are types the token must be able to search for the query to be answered (a chain's
	// target, every type of _type): a shape without them may be refused.
	needs []string
}

func get(path string) query { return query{rq: request{method: "GET", path: path}} }

func TestPatientIsolationDifferential(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole server with 20 demo patients")
	}
	runIsolationSuite(t, newIsolationServer(t))
}

// runIsolationSuite runs the differential suite against s (the server itself, or a proxy).
func runIsolationSuite(t *testing.T, s *server) {
	// Ids read directly: A's and B's resources of a few types, and a shared one.
	universe := map[string]result{}
	for _, typ := range []string{"Observation", "Condition", "Encounter", "Patient", "Practitioner", "MedicationRequest", "DiagnosticReport"} {
		universe[typ] = s.sysWalk(request{method: "GET", path: "/" + typ}, false)
		if universe[typ].status != 200 || len(universe[typ].matches) == 0 {
			t.Fatalf("system search of %s = %d with %d resources", typ, universe[typ].status, len(universe[typ].matches))
		}
	}
	pick := func(typ, patient string, pred func(entry) bool) string {
		var ids []string
		for k, e := range universe[typ].matches {
			if patientRefs(e)[patient] && (pred == nil || pred(e)) {
				ids = append(ids, k)
			}
		}
		if len(ids) == 0 {
			t.Fatalf("no %s of %s in the demo data", typ, patient)
		}
		sort.Strings(ids)
		return ids[0]
	}
	isLab := func(e entry) bool { return hasCoding(e.res["category"], labCat, "laboratory") }
	isVital := func(e entry) bool { return hasCoding(e.res["category"], labCat, "vital-signs") }
	aLab, aVital, bLab := pick("Observation", patientA, isLab), pick("Observation", patientA, isVital), pick("Observation", patientB, isLab)
	aCond, bCond := pick("Condition", patientA, nil), pick("Condition", patientB, nil)
	aEnc, bEnc := pick("Encounter", patientA, nil), pick("Encounter", patientB, nil)
	reads := []string{aLab, aVital, bLab, aCond, bCond, aEnc, bEnc, "Patient/" + patientA, "Patient/" + patientB, "Practitioner/" + demo.SmithPractitioner}

	var queries []query
	for _, id := range reads {
		queries = append(queries, get("/"+id), get("/"+id+"/_history/1"), get("/"+id+"/_history"))
	}
	queries = append(queries,
		get("/Observation?_count=7"),
		get("/Observation?patient="+patientB),
		get("/Observation?subject=Patient/"+patientB+"&_count=5"),
		get("/Observation?category=laboratory&_count=4"),
		get("/Observation?code=http://loinc.org|4548-4"),
		get("/Observation?_id="+strings.TrimPrefix(aLab, "Observation/")+","+strings.TrimPrefix(bLab, "Observation/")),
		get("/Condition?_count=3"),
		get("/Patient"),
		get("/Patient?_id="+patientA+","+patientB),
		get("/Encounter?_count=3&_revinclude=Observation:encounter"),
		get("/Observation?_count=10&_include=Observation:encounter"),
		get("/Observation?_count=10&_include=Observation:performer"),
		get("/MedicationRequest?_include=MedicationRequest:requester&_include=MedicationRequest:subject"),
		get("/DiagnosticReport?_include=DiagnosticReport:result&_include:iterate=Observation:encounter"),
		get("/Observation?_count=10&_include=*"),
		get("/Patient?_revinclude=Observation:subject&_count=2"),
		get("/Patient?_revinclude=*"),
		get("/Practitioner?_revinclude=Observation:performer&_revinclude=Encounter:participant"),
		get("/Organization?_revinclude=Patient:organization"),
		get("/Practitioner?_revinclude:iterate=Observation:performer&_revinclude:iterate=Observation:subject"),
		query{rq: request{method: "GET", path: "/Observation?performer:Practitioner.name=Smith"}, needs: []string{"Practitioner"}},
		query{rq: request{method: "GET", path: "/Observation?subject:Patient.name=Okafor"}, mayRefuse: true},
		query{rq: request{method: "GET", path: "/Patient?_has:Observation:patient:code=4548-4"}, mayRefuse: true},
		query{rq: request{method: "GET", path: "/Practitioner?_has:Observation:performer:subject=Patient/" + patientB}, mayRefuse: true},
		query{rq: request{method: "POST", path: "/Observation/_search", form: "category=laboratory&_count=3"}},
		query{rq: request{method: "POST", path: "/Observation/_search", form: "patient=" + patientB}},
		query{rq: request{method: "POST", path: "/Observation/_search?_count=5", form: "_include=Observation:encounter"}},
		query{rq: request{method: "GET", path: "/?_type=Observation,Condition&_count=9"}, needs: []string{"Observation", "Condition"}},
		get("/?_type=Patient"),
		query{rq: request{method: "GET", path: "/?_type=Observation,Practitioner"}, mayRefuse: true},
		query{rq: request{method: "GET", path: "/?_count=50"}, compartmentOnly: true},
		get("/Patient/"+patientA+"/Observation?_count=6"),
		get("/Patient/"+patientA+"/Condition"),
		get("/Patient/"+patientB+"/Observation"),
		get("/Patient/"+patientB+"/Condition"),
		query{rq: request{method: "GET", path: "/Observation/_history"}, mayRefuse: true},
		query{rq: request{method: "GET", path: "/_history"}, mayRefuse: true},
	)

	browser := s.browser()
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			parent := s.t
			s.t = t // the helpers fail the subtest, not its parent
			defer func() { s.t = parent }()
			token, granted, patient := browser.patientToken("alice", "alice-demo-password", sh.scope)
			if patient != patientA {
				t.Fatalf("token patient = %q, want %s", patient, patientA)
			}
			want := strings.Fields(sh.scope)
			got := strings.Fields(granted)
			for _, w := range want {
				if !slices.Contains(got, w) && !(strings.HasSuffix(w, ".read") && slices.Contains(got, strings.TrimSuffix(w, ".read")+".rs")) {
					t.Fatalf("granted scope %q lacks %s", granted, w)
				}
			}
			refused, compared := 0, 0
			for _, q := range queries {
				what := q.rq.method + " " + q.rq.path
				if q.rq.form != "" {
					what += " [" + q.rq.form + "]"
				}
				sys := s.sysWalk(q.rq, q.compartmentOnly || strings.Contains(q.rq.path, "_revinclude=*"))
				mine := s.walk(q.rq, token)
				s.noOtherPatient(t, what, mine)
				wantM, wantI := s.expected(sh, sys, q.compartmentOnly)
				if sys.status != http.StatusOK {
					// A request the system token cannot make (another patient's compartment is
					// fine for it; history too): A's must fail as well.
					if mine.status == http.StatusOK && (len(mine.matches) > 0 || len(mine.include) > 0) {
						t.Errorf("%s: system %d, A's token 200 with %v", what, sys.status, keys(entryKeys(mine.matches)))
					}
					continue
				}
				if mine.status != http.StatusOK {
					if mine.status != http.StatusForbidden && mine.status != http.StatusNotFound {
						t.Errorf("%s: A's token = %d, want 200, 403 or 404", what, mine.status)
					}
					lacks := sh.types != nil && slices.ContainsFunc(q.needs, func(t string) bool { return !slices.Contains(sh.types, t) })
					if len(wantM)+len(wantI) > 0 && !q.mayRefuse && !lacks {
						t.Errorf("%s: A's token = %d, but A may see %v %v", what, mine.status, keys(wantM), keys(wantI))
					}
					refused++
					continue
				}
				compared++
				if extra, missing := diff(entryKeys(mine.matches), wantM); len(extra)+len(missing) > 0 {
					t.Errorf("%s: matches differ from the hand-filtered system result: extra %v, missing %v", what, extra, missing)
				}
				if extra, missing := diff(entryKeys(mine.include), wantI); len(extra)+len(missing) > 0 {
					extra, missing = s.beyondIncludeCap(sys, extra), s.beyondIncludeCap(sys, missing)
					if len(extra)+len(missing) > 0 {
						t.Errorf("%s: included resources differ: extra %v, missing %v", what, extra, missing)
					}
				}
				// A count must not tell what is held back (SECURITY-LESSONS #6).
				if mine.total != nil && int(*mine.total) != len(wantM) {
					t.Errorf("%s: Bundle.total = %v, A may see %d matches", what, *mine.total, len(wantM))
				}
			}
			t.Logf("%s: %d requests compared with the system oracle, %d refused", sh.name, compared, refused)
			if compared == 0 {
				t.Error("nothing was compared")
			}

			s.everything(t, sh, token)
			s.bundles(t, sh, token, aLab, aVital, bLab, aCond, bCond)
			s.pageReplay(t, token)
		})
	}
}

// everything compares A's $everything with every resource of the compartment types found by
// system searches, filtered by hand.
func (s *server) everything(t *testing.T, sh shape, token string) {
	t.Helper()
	mine := s.walk(request{method: "GET", path: "/Patient/" + patientA + "/$everything"}, token)
	s.noOtherPatient(t, "$everything", mine)
	other := s.walk(request{method: "GET", path: "/Patient/" + patientB + "/$everything"}, token)
	if other.status == http.StatusOK {
		t.Errorf("B's $everything with A's token = 200")
	}
	if sh.types != nil && !slices.Contains(sh.types, "Patient") {
		// $everything needs read on Patient.
		if mine.status == http.StatusOK {
			t.Errorf("$everything without a Patient scope = 200")
		}
		return
	}
	if mine.status != http.StatusOK {
		t.Fatalf("A's $everything = %d", mine.status)
	}
	want := map[string]bool{}
	for typ := range s.compTypes {
		if (sh.types != nil && !slices.Contains(sh.types, typ)) || typ == "AuditEvent" {
			// AuditEvents are served from the audit trail, not the record: $everything leaves
			// them out.
			continue
		}
		sys := s.sysWalk(request{method: "GET", path: "/" + typ}, false)
		for k, e := range sys.matches {
			if s.visible(sh, e, true) {
				want[k] = true
			}
		}
	}
	if extra, missing := diff(entryKeys(mine.matches), want); len(extra)+len(missing) > 0 {
		t.Errorf("$everything differs from the hand-filtered compartment: extra %v, missing %v", extra, missing)
	}
}

// bundles sends batch and transaction Bundles of reads and searches: every entry is decided on
// its own, and no entry answers with another patient's data.
func (s *server) bundles(t *testing.T, sh shape, token string, aLab, aVital, bLab, aCond, bCond string) {
	t.Helper()
	reads := []string{aLab, aVital, bLab, aCond, bCond, "Patient/" + patientA, "Patient/" + patientB}
	searches := []string{"Observation?_count=1000", "Observation?patient=" + patientB + "&_count=1000", "Condition?_count=1000"}
	for _, typ := range []string{"batch", "transaction"} {
		var entries []string
		for _, u := range append(slices.Clone(reads), searches...) {
			entries = append(entries, fmt.Sprintf(`{"request":{"method":"GET","url":%q}}`, u))
		}
		body := `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
		r := s.do("POST", "", token, "application/fhir+json", body)
		s.noOtherPatientIn(t, typ, r.body)
		if typ == "transaction" && r.status != http.StatusOK {
			// A transaction is all or nothing: refusing it whole is isolation too.
			continue
		}
		if r.status != http.StatusOK {
			t.Fatalf("%s = %d %.300s", typ, r.status, r.raw)
		}
		out, _ := r.body["entry"].([]any)
		if len(out) != len(reads)+len(searches) {
			t.Fatalf("%s: %d entries in the response, sent %d", typ, len(out), len(reads)+len(searches))
		}
		for i, x := range out {
			em, _ := x.(map[string]any)
			resp, _ := em["response"].(map[string]any)
			status, _ := resp["status"].(string)
			res, _ := em["resource"].(map[string]any)
			if i < len(reads) {
				typ2, _, _ := strings.Cut(reads[i], "/")
				sys := s.sysWalk(request{method: "GET", path: "/" + reads[i]}, false)
				e := sys.matches[reads[i]]
				ok := s.visible(sh, entry{key: reads[i], typ: typ2, res: e.res}, false)
				if ok != strings.HasPrefix(status, "200") {
					t.Errorf("%s entry GET %s = %q, A may see it: %v", typ, reads[i], status, ok)
				}
				if ok && res != nil && toEntry(res, "").key != reads[i] {
					t.Errorf("%s entry GET %s returned %s", typ, reads[i], toEntry(res, "").key)
				}
				continue
			}
			q := searches[i-len(reads)]
			sys := s.sysWalk(request{method: "GET", path: "/" + q}, false)
			wantM, _ := s.expected(sh, sys, false)
			if !strings.HasPrefix(status, "200") {
				// A search the token may not run at all is refused inside a Bundle as outside
				// it; a refusal leaks nothing.
				if !strings.HasPrefix(status, "403") && !strings.HasPrefix(status, "404") {
					t.Errorf("%s entry GET %s = %q, want 200, 403 or 404", typ, q, status)
				}
				continue
			}
			got := map[string]bool{}
			inner, _ := res["entry"].([]any)
			for _, ie := range inner {
				im, _ := ie.(map[string]any)
				ir, _ := im["resource"].(map[string]any)
				if ir != nil && ir["resourceType"] != "OperationOutcome" {
					got[toEntry(ir, "").key] = true
				}
			}
			if extra, missing := diff(got, wantM); len(extra)+len(missing) > 0 {
				t.Errorf("%s entry GET %s: extra %v, missing %v", typ, q, extra, missing)
			}
		}
	}
}

// noOtherPatientIn fails for any resource of another patient anywhere in a response (nested
// Bundles included). Diagnostics that repeat the ids the client sent are not resources.
func (s *server) noOtherPatientIn(t *testing.T, what string, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		if typ, ok := x["resourceType"].(string); ok && typ != "Bundle" && typ != "OperationOutcome" {
			for p := range patientRefs(toEntry(x, "")) {
				if p != patientA {
					t.Errorf("%s: %s of Patient/%s leaked to A", what, toEntry(x, "").key, p)
				}
			}
		}
		for _, c := range x {
			s.noOtherPatientIn(t, what, c)
		}
	case []any:
		for _, c := range x {
			s.noOtherPatientIn(t, what, c)
		}
	}
}

// pageReplay: A's next link is bound to A; B's token cannot follow it.
func (s *server) pageReplay(t *testing.T, token string) {
	t.Helper()
	r := s.do("GET", "/Observation?_count=2", token, "", "")
	if r.status != http.StatusOK {
		return // the shape does not search Observation
	}
	next := ""
	links, _ := r.body["link"].([]any)
	for _, l := range links {
		lm, _ := l.(map[string]any)
		if lm["relation"] == "next" {
			next, _ = lm["url"].(string)
		}
	}
	if next == "" {
		t.Fatal("A's Observation search with _count=2 has no next link")
	}
	if s.bob == "" {
		var patient string
		s.bob, _, patient = s.browser().patientToken("bob", "bob-demo-password", "launch/patient patient/*.rs")
		if patient != patientB {
			t.Fatalf("bob's token is for %q", patient)
		}
	}
	if r := s.do("GET", next, s.bob, "", ""); r.status == http.StatusOK {
		t.Errorf("B followed A's page link: %.300s", r.raw)
	}
	if r := s.do("GET", next, s.system, "", ""); r.status == http.StatusOK {
		t.Errorf("the system client followed A's page link: %.300s", r.raw)
	}
}

// oracleIncludeCap is the most included resources one page carries.
const oracleIncludeCap = 1000

// beyondIncludeCap drops the keys the oracle could not show: when its page stopped at the
// include cap, the types it holds no included resource of (the store had not reached them,
// e.g. the patient's Consents).
func (s *server) beyondIncludeCap(sys result, keys []string) []string {
	if len(sys.include) < oracleIncludeCap && !s.proxied {
		return keys
	}
	seen := map[string]bool{}
	for k := range sys.include {
		typ, _, _ := strings.Cut(k, "/")
		seen[typ] = true
	}
	var out []string
	for _, k := range keys {
		if typ, _, _ := strings.Cut(k, "/"); seen[typ] {
			out = append(out, k)
		}
	}
	return out
}
