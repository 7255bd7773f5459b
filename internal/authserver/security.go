package authserver

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/authn/rolesec"
	"github.com/fhirgate/fhirgate/internal/config"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
	"github.com/fhirgate/fhirgate/internal/tokens"
)

// Security derives the security claims of tokens from the roles of the user and of the client
// (config policy.roles and policy.client_roles): the clearance, the purpose of use and
// emergency access (docs/access-control.md §3.9–3.12).
type Security struct {
	Roles       map[string]config.Role
	ClientRoles map[string][]string
	// BreakGlassTTL is the lifetime of a break-glass access token; 15 minutes when zero.
	BreakGlassTTL time.Duration
}

// ConsentRecorder records, as a FHIR Consent, that a patient authorised an app. The app
// implements it over the FHIR backend.
type ConsentRecorder interface {
	RecordAppConsent(ctx context.Context, patient, clientID, clientName string, scopes []string, at time.Time) error
}

// Authorize request parameters of fhirgate (docs/authorization-server.md).
const (
	// ParamPurposeOfUse narrows the purposes of use of the token (space-separated v3
	// ActReason codes); BTG requests emergency access.
	ParamPurposeOfUse = "purpose_of_use"
	// ParamBreakGlassReason is the written reason of an emergency access request.
	ParamBreakGlassReason = "break_glass_reason"
	maxBreakGlassReason   = 1024
)

// clearanceOf merges the clearances of roles: the highest confidentiality and every
// sensitivity code of any role. nil when no role is known.
func (sec *Security) clearanceOf(roles []string) *tokens.Clearance {
	if sec == nil {
		return nil
	}
	return (*tokens.Clearance)(rolesec.Clearance(sec.Roles, roles))
}

// Clearance is the clearance claim of a token: the user's roles bounded by the client's roles
// (the lower confidentiality, the common sensitivity codes), or the client's alone for a
// client_credentials token. nil when neither has a known role (the FHIR API then applies its
// default clearance).
func (sec *Security) Clearance(userRoles []string, hasUser bool, clientID string) *tokens.Clearance {
	if sec == nil {
		return nil
	}
	client := sec.clearanceOf(sec.ClientRoles[clientID])
	if !hasUser {
		return client
	}
	user := sec.clearanceOf(userRoles)
	if user == nil || client == nil {
		return user
	}
	out := &tokens.Clearance{Confidentiality: user.Confidentiality}
	if authn.ConfidentialityRank(client.Confidentiality) < authn.ConfidentialityRank(user.Confidentiality) {
		out.Confidentiality = client.Confidentiality
	}
	switch {
	case slices.Contains(client.Sensitivity, "*"):
		out.Sensitivity = user.Sensitivity
	case slices.Contains(user.Sensitivity, "*"):
		out.Sensitivity = client.Sensitivity
	default:
		for _, s := range user.Sensitivity {
			if slices.Contains(client.Sensitivity, s) {
				out.Sensitivity = append(out.Sensitivity, s)
			}
		}
	}
	return out
}

// purposes are the default purposes of use of roles.
func (sec *Security) purposes(roles []string) []string {
	if sec == nil {
		return nil
	}
	return rolesec.Purposes(sec.Roles, roles)
}

// mayBreakGlass reports whether a role of the user allows emergency access.
func (sec *Security) mayBreakGlass(roles []string) bool {
	if sec == nil {
		return false
	}
	for _, name := range roles {
		if sec.Roles[name].BreakGlass {
			return true
		}
	}
	return false
}

// ceiling is the most a role may delegate: the configured scope ceiling, or the built-in one.
func (sec *Security) ceiling(role string) (string, bool) {
	if sec != nil {
		if r, ok := sec.Roles[role]; ok && r.ScopeCeiling != "" {
			return r.ScopeCeiling, true
		}
	}
	s, ok := roleScopes[role]
	return s, ok
}

// allowedScopes is the most u may delegate: identity scopes plus the ceilings of u's roles.
func (s *Server) allowedScopes(u *User) smart.Scopes {
	sc := identityScopes
	for _, r := range u.Roles {
		if c, ok := s.cfg.Security.ceiling(r); ok {
			sc += " " + c
		}
	}
	out, _ := smart.ParseScopes(sc)
	return out
}

var errPurpose = errors.New("authserver: purpose of use not allowed")

// requestedPurposes settles the purposes of use of an authorization: the user's role defaults,
// narrowed by the purpose_of_use parameter (which may only name purposes the roles carry, or
// BTG). btg is true for an emergency access request.
func (s *Server) requestedPurposes(u *User, form map[string][]string) (purposes []string, btg bool, err error) {
	def := s.cfg.Security.purposes(u.Roles)
	raw := strings.Join(form[ParamPurposeOfUse], " ")
	if strings.TrimSpace(raw) == "" {
		return def, false, nil
	}
	for _, p := range strings.Fields(raw) {
		switch {
		case p == authn.PurposeBreakGlass:
			btg = true
		case slices.Contains(def, p):
			if !slices.Contains(purposes, p) {
				purposes = append(purposes, p)
			}
		default:
			return nil, false, errPurpose
		}
	}
	if btg {
		return []string{authn.PurposeBreakGlass}, true, nil
	}
	return purposes, false, nil
}

// breakGlassEnabled reports whether some role allows emergency access; the break-glass token
// exchange is offered (and advertised) only then.
func (sec *Security) breakGlassEnabled() bool {
	if sec == nil {
		return false
	}
	for _, r := range sec.Roles {
		if r.BreakGlass {
			return true
		}
	}
	return false
}

// startBreakGlass is what every emergency access grant does, at authorize or by token exchange
// (via names the way in, for the event): it opens the review item (user, client, patient and the
// reason), makes sess a short-lived BTG grant naming the item and raises the audit alert (the
// break-glass detector). The caller has checked the role and the reason.
func (s *Server) startBreakGlass(r *http.Request, sess *Session, reason, via string) error {
	review := randomToken()[:22]
	err := s.db.PutBreakGlass(r.Context(), sqlstore.BreakGlass{
		ID: review, CreatedAt: s.now(), Username: sess.Username, FHIRUser: sess.FHIRUser, ClientID: sess.ClientID,
		Patient: sess.Patient, Reason: reason, Status: sqlstore.BreakGlassOpen,
	})
	if err != nil {
		return err
	}
	sess.PurposeOfUse = []string{authn.PurposeBreakGlass}
	sess.BreakGlass = &tokens.BreakGlass{Reason: reason, Review: review}
	sess.AccessTTL = s.cfg.Security.breakGlassTTL()
	// The reason stays in the review queue, out of the audit trail.
	s.recordOrLog(r, audit.Event{
		Action: audit.ActionBreakGlass, Outcome: audit.OutcomeSuccess, ClientID: sess.ClientID, Subject: sess.Username,
		FHIRUser: sess.FHIRUser, Roles: sess.Roles, Patients: patients(sess.Patient), PurposeOfUse: sess.PurposeOfUse, BreakGlass: true,
		Detail: "emergency access granted" + via + "; review item " + review,
	})
	return nil
}

func (sec *Security) breakGlassTTL() time.Duration {
	if sec == nil || sec.BreakGlassTTL <= 0 {
		return 15 * time.Minute
	}
	return sec.BreakGlassTTL
}

// ErrReviewClosed is returned when a break-glass review item already has a decision.
var ErrReviewClosed = errors.New("authserver: the break-glass review item is already closed")

// BreakGlassReviews lists the review queue (status open, closed, or "" for every item).
func (s *Server) BreakGlassReviews(ctx context.Context, status string) ([]sqlstore.BreakGlass, error) {
	if status != "" && status != sqlstore.BreakGlassOpen && status != sqlstore.BreakGlassClosed {
		return nil, ErrInvalidReview
	}
	return s.db.ListBreakGlass(ctx, status, 0)
}

// ErrInvalidReview is a malformed review request (unknown status or decision, no reviewer).
var ErrInvalidReview = errors.New("authserver: invalid break-glass review")

// CloseBreakGlassReview records a privacy officer's decision on a review item, and audits it.
func (s *Server) CloseBreakGlassReview(r *http.Request, id, decision, reviewer, note string) (sqlstore.BreakGlass, error) {
	ctx := r.Context()
	if (decision != sqlstore.DecisionJustified && decision != sqlstore.DecisionUnjustified) || strings.TrimSpace(reviewer) == "" || len(reviewer) > 256 || len(note) > 4096 {
		return sqlstore.BreakGlass{}, ErrInvalidReview
	}
	err := s.db.CloseBreakGlass(ctx, id, decision, reviewer, note, s.now())
	switch {
	case errors.Is(err, sqlstore.ErrBreakGlassNotFound):
		return sqlstore.BreakGlass{}, ErrNotFound
	case errors.Is(err, sqlstore.ErrBreakGlassClosed):
		return sqlstore.BreakGlass{}, ErrReviewClosed
	case err != nil:
		return sqlstore.BreakGlass{}, err
	}
	item, err := s.db.GetBreakGlass(ctx, id)
	if err != nil {
		return item, err
	}
	if err := s.RecordEvent(r, audit.Event{
		Action: audit.ActionBreakGlassReviewed, Outcome: audit.OutcomeSuccess, Subject: item.Username, FHIRUser: item.FHIRUser,
		ClientID: item.ClientID, Patients: patients(item.Patient), Detail: "review " + id + " closed as " + decision + " by " + reviewer,
	}); err != nil {
		return item, err
	}
	return item, nil
}
