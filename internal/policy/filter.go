package policy

import (
	"sync"

	"github.com/fhirgate/fhirgate/internal/fhir/summary"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// ResponseFilter checks each resource a request is about to return: read results, search
// matches, _include and _revinclude entries, history entries and operation outputs. It is the
// defence in depth behind the narrowing: a resource that the narrowed query should never have
// produced is still held back here. It is safe for concurrent use.
type ResponseFilter struct {
	e     *Engine
	subj  *subject
	perms smart.Perms // any one of them suffices
	only  string      // when set, the only type the response may hold

	mu    sync.Mutex
	rules map[string]*filterRule
}

type filterRule struct {
	a      access
	reason Reason
}

func (e *Engine) newFilter(subj *subject, perms smart.Perms) *ResponseFilter {
	return &ResponseFilter{e: e, subj: subj, perms: perms, rules: map[string]*filterRule{}}
}

func (f *ResponseFilter) rule(typ string) *filterRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.rules[typ]; ok {
		return r
	}
	a, why, _ := f.e.accessFor(f.subj, typ, f.perms)
	r := &filterRule{a: a, reason: why}
	f.rules[typ] = r
	return r
}

// Permits reports whether any resource of typ could pass (the token reaches the type at all).
// $everything uses it to skip types; it never replaces Check.
func (f *ResponseFilter) Permits(typ string) bool {
	if f == nil || !smart.IsResourceType(typ) || (f.only != "" && typ != f.only) {
		return false
	}
	return f.rule(typ).reason == ""
}

// Check reports whether the resource of type resourceType with JSON body may be returned, and
// why not. The body's own resourceType must be resourceType. A body-less entry (a deleted
// version in a history) passes only when nothing about the type depends on the body. Errors of
// the Matcher or Membership refuse the resource (ReasonEvaluationError). A nil filter refuses
// everything.
func (f *ResponseFilter) Check(resourceType string, body []byte) (bool, Reason) {
	_, _, why := f.Release(resourceType, body)
	return why == "", why
}

// Release is Check that also returns the body to send: body itself, or a redacted copy (the
// elements policy.labels.redact names removed, meta.tag SUBSETTED, redacted true) when a label
// above the clearance is redacted rather than hidden. It refuses exactly when why is not empty.
func (f *ResponseFilter) Release(resourceType string, body []byte) (out []byte, redacted bool, why Reason) {
	if f == nil || !smart.IsResourceType(resourceType) || (f.only != "" && resourceType != f.only) {
		return nil, false, ReasonInvalidInput
	}
	r := f.rule(resourceType)
	if r.reason != "" {
		return nil, false, r.reason
	}
	ok, paths, why, err := f.e.checkBody(&r.a, resourceType, body)
	switch {
	case err != nil:
		return nil, false, ReasonEvaluationError
	case !ok && why == "":
		return nil, false, ReasonInvalidInput
	case !ok:
		return nil, false, why
	case len(paths) == 0:
		return body, false, ""
	}
	out, redacted, err = summary.Remove(body, paths)
	if err != nil {
		return nil, false, ReasonEvaluationError
	}
	return out, redacted, ""
}
