// Package policy owns the access decision for the FHIR API: a pure engine that takes who is
// asking (an authn.Principal) and what they ask for (an Input: interaction, types, id, search,
// bodies) and returns a Decision that allows or denies, explains itself with enumerated Reasons,
// narrows searches (patient compartment and granular-scope clauses to AND into the search.Query),
// and carries a ResponseFilter that every resource leaving the server passes through as defence
// in depth.
//
// The engine denies by default: an interaction, operation, scope form or query shape it does not
// model is refused. It does no I/O of its own and imports no HTTP or database code; checking a
// resource body against a compartment or a granular scope is delegated to the small Matcher and
// Membership interfaces. The user/ scopes of a practitioner are bounded by a UserAccess strategy
// (all, the Practitioner compartment, or the patients of the user's care teams, fetched through a
// CareTeamSource the app implements). Every Decision names the Rule that decided it, and an
// optional shadow rule set is evaluated beside the enforced one in audit-only mode
// (Decision.Shadow). docs/access-control.md describes the rules.
package policy
