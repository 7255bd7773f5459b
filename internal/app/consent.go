package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authserver"
	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/fhir"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/sharedstate"
)

// consentStore serves patients' Consents to the policy (policy.ConsentSource) from the backend,
// cached per patient; every Consent write through the FHIR API (watch) drops the cache. It also
// records a patient's authorisation of an app as a Consent (authserver.ConsentRecorder).
//
// With several instances (share), every Consent write is also announced to the others, which
// drop their caches, and the cache is used only while those notices are heard: otherwise every
// lookup reads the backend.
type consentStore struct {
	b   backend.Backend
	reg *search.Registry
	ttl time.Duration
	now func() time.Time

	shared *sharedstate.Invalidations // nil: one instance on its own
	scope  string

	mu       sync.Mutex
	gen      uint64
	patients map[string]consentEntry
	all      *consentList
}

type consentEntry struct {
	bodies  [][]byte
	gen     uint64
	expires time.Time
}

type consentList struct {
	ids     []string
	gen     uint64
	expires time.Time
}

var (
	_ policy.ConsentSource       = (*consentStore)(nil)
	_ authserver.ConsentRecorder = (*consentStore)(nil)
)

// maxPatientConsents bounds the Consents read for one patient (the policy fails closed above
// its own cap).
const maxPatientConsents = 101

func newConsentStore(b backend.Backend, reg *search.Registry, ttl time.Duration) *consentStore {
	return &consentStore{b: b, reg: reg, ttl: ttl, now: time.Now, patients: map[string]consentEntry{}}
}

// share makes the cache one of several instances': Consent writes are published on n under scope
// (the FHIR base), notices from the others drop the cache, and the cache is trusted only while n
// is live. n nil (no Redis) leaves the store on its own.
func (c *consentStore) share(n *sharedstate.Invalidations, scope string) {
	if n == nil {
		return
	}
	c.shared, c.scope = n, scope
	n.Watch(scope, c.invalidate)
}

// cacheable reports whether cached answers may be used and kept: always on one instance, only
// while the other instances' notices are heard on several.
func (c *consentStore) cacheable() bool { return c.shared == nil || c.shared.Live() }

// changed drops this instance's cache and tells the other instances to drop theirs; called after
// a Consent write.
func (c *consentStore) changed(ctx context.Context) {
	c.invalidate()
	if c.shared != nil {
		c.shared.Publish(ctx, c.scope)
	}
}

// invalidate drops every cached answer (a Consent was written).
func (c *consentStore) invalidate() {
	c.mu.Lock()
	c.gen++
	c.patients = map[string]consentEntry{}
	c.all = nil
	c.mu.Unlock()
}

// PatientConsents implements policy.ConsentSource.
func (c *consentStore) PatientConsents(ctx context.Context, patient string) ([][]byte, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.patients[patient]
	gen := c.gen
	c.mu.Unlock()
	if ok && e.gen == gen && now.Before(e.expires) && c.cacheable() {
		return e.bodies, nil
	}
	res, err := c.search(ctx, url.Values{"patient": {"Patient/" + patient}, "status": {"active"}}, maxPatientConsents)
	if err != nil {
		return nil, err
	}
	bodies := make([][]byte, 0, len(res.Matches))
	for _, m := range res.Matches {
		bodies = append(bodies, m.Body)
	}
	c.mu.Lock()
	// A drop while the backend was read (a notice, the subscription going up or down) may be
	// about this patient: the answer is returned but not kept.
	if c.gen == gen && c.cacheable() {
		c.patients[patient] = consentEntry{bodies: bodies, gen: gen, expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return bodies, nil
}

// ConsentPatients implements policy.ConsentSource: the patients of the active Consents.
func (c *consentStore) ConsentPatients(ctx context.Context, limit int) ([]string, error) {
	now := c.now()
	c.mu.Lock()
	l := c.all
	gen := c.gen
	c.mu.Unlock()
	if l != nil && l.gen == gen && now.Before(l.expires) && c.cacheable() {
		return l.ids, nil
	}
	seen := map[string]bool{}
	var ids []string
	q, err := c.query(url.Values{"status": {"active"}}, 1000)
	if err != nil {
		return nil, err
	}
	for {
		res, err := c.b.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, m := range res.Matches {
			var h struct {
				Patient struct{ Reference string } `json:"patient"`
			}
			if json.Unmarshal(m.Body, &h) != nil {
				continue
			}
			if id, ok := cutPatient(h.Patient.Reference); ok && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if len(ids) > limit || res.Next == "" {
			break
		}
		q.Cursor = res.Next
	}
	c.mu.Lock()
	if c.gen == gen && c.cacheable() {
		c.all = &consentList{ids: ids, gen: gen, expires: now.Add(c.ttl)}
	}
	c.mu.Unlock()
	return ids, nil
}

func cutPatient(ref string) (string, bool) {
	const p = "Patient/"
	if len(ref) > len(p) && ref[:len(p)] == p && fhir.ValidID(ref[len(p):]) {
		return ref[len(p):], true
	}
	return "", false
}

func (c *consentStore) query(params url.Values, count int) (*search.Query, error) {
	params.Set("_count", strconv.Itoa(count))
	q, _, err := search.Parse(c.reg, []string{"Consent"}, params, search.ParseOptions{DefaultCount: count, MaxCount: count, Strict: true})
	return q, err
}

func (c *consentStore) search(ctx context.Context, params url.Values, count int) (*search.Result, error) {
	q, err := c.query(params, count)
	if err != nil {
		return nil, err
	}
	return c.b.Search(ctx, q)
}

// RecordAppConsent implements authserver.ConsentRecorder: one Consent per patient and app
// (updated on every authorisation), permitting the app, that the patient can read and revoke.
func (c *consentStore) RecordAppConsent(ctx context.Context, patient, clientID, clientName string, scopes []string, at time.Time) error {
	sum := sha256.Sum256([]byte(clientID))
	id := "app-" + hex.EncodeToString(sum[:12]) + "-" + patient
	if len(id) > 64 {
		sum := sha256.Sum256([]byte(clientID + "\x00" + patient))
		id = "app-" + hex.EncodeToString(sum[:20])
	}
	var ext []any
	for _, s := range scopes {
		ext = append(ext, map[string]any{"url": grantedScopeExtension, "valueString": s})
	}
	actor := map[string]any{
		"role":      map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}}},
		"reference": map[string]any{"identifier": map[string]any{"system": policy.ClientIDSystem, "value": clientID}, "display": clientName},
	}
	body := map[string]any{
		"resourceType": "Consent",
		"id":           id,
		"status":       "active",
		"scope":        map[string]any{"coding": []any{map[string]any{"system": policy.ConsentScopeSystem, "code": "patient-privacy"}}},
		"category":     []any{map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}}}},
		"patient":      map[string]any{"reference": "Patient/" + patient},
		"dateTime":     at.UTC().Format(time.RFC3339),
		"performer":    []any{map[string]any{"reference": "Patient/" + patient}},
		"policyRule":   map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}},
		"provision": map[string]any{
			"type":   "permit",
			"period": map[string]any{"start": at.UTC().Format(time.RFC3339)},
			"actor":  []any{actor},
		},
	}
	if len(ext) > 0 {
		body["extension"] = ext
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if _, _, err := c.b.Update(ctx, "Consent", id, raw, backend.UpdateOptions{}); err != nil {
		return err
	}
	c.changed(ctx)
	return nil
}

// grantedScopeExtension records the scopes a patient granted an app on the Consent.
const grantedScopeExtension = "https://fhirgate.dev/fhir/StructureDefinition/granted-scope"

// watch wraps a backend so that every Consent write drops the cache, here and (share) at the
// other instances.
func (c *consentStore) watch(b backend.Backend) backend.Backend {
	return consentWatch{Backend: b, c: c}
}

type consentWatch struct {
	backend.Backend
	c *consentStore
	// inTx is set inside a transaction: a Consent write there is announced to the other
	// instances after the commit, not before (they would read and keep the old Consents).
	inTx *atomic.Bool
}

func (w consentWatch) wrote(ctx context.Context, typ string) {
	if typ != "Consent" {
		return
	}
	if w.inTx != nil {
		w.c.invalidate()
		w.inTx.Store(true)
		return
	}
	w.c.changed(ctx)
}

func (w consentWatch) Create(ctx context.Context, typ string, body []byte, opts backend.CreateOptions) (*fhir.Resource, bool, error) {
	res, created, err := w.Backend.Create(ctx, typ, body, opts)
	w.wrote(ctx, typ)
	return res, created, err
}

func (w consentWatch) Update(ctx context.Context, typ, id string, body []byte, opts backend.UpdateOptions) (*fhir.Resource, bool, error) {
	res, created, err := w.Backend.Update(ctx, typ, id, body, opts)
	w.wrote(ctx, typ)
	return res, created, err
}

func (w consentWatch) Delete(ctx context.Context, typ, id string) (*fhir.Resource, error) {
	res, err := w.Backend.Delete(ctx, typ, id)
	w.wrote(ctx, typ)
	return res, err
}

func (w consentWatch) InTx(ctx context.Context, fn func(tx backend.Backend) error) error {
	if w.inTx != nil { // nested: the outermost transaction announces
		return w.Backend.InTx(ctx, func(tx backend.Backend) error { return fn(consentWatch{Backend: tx, c: w.c, inTx: w.inTx}) })
	}
	var consents atomic.Bool
	err := w.Backend.InTx(ctx, func(tx backend.Backend) error { return fn(consentWatch{Backend: tx, c: w.c, inTx: &consents}) })
	// A rolled-back transaction may have dropped the cache for nothing; a committed one must.
	w.c.invalidate()
	if consents.Load() {
		w.c.changed(ctx)
	}
	return err
}

// securityConfig is the authorization server's view of policy.roles and policy.client_roles.
func securityConfig(p config.Policy) *authserver.Security {
	return &authserver.Security{Roles: p.Roles, ClientRoles: p.ClientRoles, BreakGlassTTL: p.BreakGlass.TTL}
}

// labelPolicy is the engine's label policy from config (nil when not enforced).
func labelPolicy(p config.Policy) *policy.LabelPolicy {
	if !p.Labels.Enforce {
		return nil
	}
	lp := &policy.LabelPolicy{
		Sensitivity: p.Labels.Sensitivity,
		Default:     authnClearance(p.Labels.DefaultClearance),
	}
	for _, r := range p.Labels.Redact {
		lp.Redact = append(lp.Redact, policy.Redaction{Labels: r.Labels, Elements: r.Elements})
	}
	return lp
}

func authnClearance(c config.Clearance) authn.Clearance {
	return authn.Clearance{Confidentiality: c.Confidentiality, Sensitivity: c.Sensitivity}
}

// recorder is the ConsentRecorder of the authorization server: nil when authorisations are
// not recorded.
func (c *consentStore) recorder(p config.PolicyConsent) authserver.ConsentRecorder {
	if !p.RecordAuthorizations {
		return nil
	}
	return c
}
