// Package smart owns the SMART App Launch vocabulary: the scope grammar (v1, v2 and granular v2
// scopes), scope comparison and intersection, and the launch-context values carried in tokens.
//
// Parsing is strict and whole-token: a scope is either understood completely or not at all, so a
// partial match can never widen access. ParseScopes drops what it does not understand instead of
// failing, which is what an authorization server needs when a client asks for scopes it may not
// get; the dropped strings are returned so they can be logged.
//
// Internally every resource scope is normalised to v2 permissions (c r u d s) with optional
// search constraints; the syntax the client used (v1 or v2) is kept so that a token response can
// answer in the same style (SMART App Launch 2.x, "permission-v1").
//
// The package does no I/O and imports no HTTP or database code.
package smart
