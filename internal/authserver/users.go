package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/internal/authserver/password"
	"github.com/fhirgate/fhirgate/internal/smart"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// User is a local account.
type User struct {
	Username string   `json:"username"`
	FHIRUser string   `json:"fhir_user,omitempty"`
	Roles    []string `json:"roles,omitempty"`
	// PasswordHash is the argon2id PHC string; never serialized to API answers.
	PasswordHash string `json:"-"`
}

// Role names with built-in meaning. A user's role bounds what the user can delegate: see
// roleScopes.
const (
	RolePatient   = "patient"
	RoleClinician = "clinician"
)

// roleScopes is what each role may delegate to apps, before the client's own registration and the
// user's consent narrow it further. A user without a known role can sign in and grant identity
// scopes only (deny by default).
var roleScopes = map[string]string{
	RolePatient:   "patient/*.rs patient/Consent.cruds",
	RoleClinician: "patient/*.cruds user/*.cruds",
}

// identityScopes are granted to any signed-in user if requested and allowed for the client.
const identityScopes = "openid fhirUser profile launch launch/patient launch/encounter offline_access online_access"

// AllowedScopes is the most u may delegate.
func (u *User) AllowedScopes() smart.Scopes {
	s := identityScopes
	for _, r := range u.Roles {
		if rs, ok := roleScopes[r]; ok {
			s += " " + rs
		}
	}
	out, _ := smart.ParseScopes(s)
	return out
}

// IsPatient reports whether the user's FHIR resource is a Patient.
func (u *User) IsPatient() bool { return strings.HasPrefix(u.FHIRUser, "Patient/") }

// Users is the user registry over the store.
type Users struct {
	db     *sqlstore.Store
	now    func() time.Time
	params password.Params
	dummy  string
}

// NewUsers returns the registry. params are the argon2id costs for new hashes.
func NewUsers(db *sqlstore.Store, params password.Params, now func() time.Time) (*Users, error) {
	if now == nil {
		now = time.Now
	}
	// A hash to verify against when the user does not exist, so that the answer takes as long.
	dummy, err := password.Hash("not a password", params)
	if err != nil {
		return nil, err
	}
	return &Users{db: db, now: now, params: params, dummy: dummy}, nil
}

// UserSpec creates or replaces a user: exactly one of Password and PasswordHash.
type UserSpec struct {
	Username     string   `json:"username"`
	Password     string   `json:"password,omitempty"`
	PasswordHash string   `json:"password_hash,omitempty"`
	FHIRUser     string   `json:"fhir_user,omitempty"`
	Roles        []string `json:"roles,omitempty"`
}

// ErrInvalidUser is wrapped by user validation failures.
var ErrInvalidUser = errors.New("authserver: invalid user")

// Put validates, hashes the password and stores the user.
func (us *Users) Put(ctx context.Context, spec UserSpec, source string) error {
	if spec.Username == "" || len(spec.Username) > 128 || strings.ContainsAny(spec.Username, " \t\r\n") {
		return fmt.Errorf("%w: username must be 1-128 characters without spaces", ErrInvalidUser)
	}
	if (spec.Password == "") == (spec.PasswordHash == "") {
		return fmt.Errorf("%w: needs exactly one of password and password_hash", ErrInvalidUser)
	}
	if spec.FHIRUser != "" {
		typ, _, ok := smart.SplitReference(spec.FHIRUser)
		if !ok || !slices.Contains([]string{"Patient", "Practitioner", "RelatedPerson", "Person"}, typ) {
			return fmt.Errorf("%w: fhir_user must be Patient/, Practitioner/, RelatedPerson/ or Person/ followed by an id", ErrInvalidUser)
		}
	}
	hash := spec.PasswordHash
	if spec.Password != "" {
		if len(spec.Password) < 8 {
			return fmt.Errorf("%w: password must be at least 8 characters", ErrInvalidUser)
		}
		h, err := password.Hash(spec.Password, us.params)
		if err != nil {
			return err
		}
		hash = h
	} else if _, _, _, err := password.Parse(hash); err != nil {
		return fmt.Errorf("%w: password_hash: %w", ErrInvalidUser, err)
	}
	roles, _ := json.Marshal(spec.Roles)
	if spec.Roles == nil {
		roles = []byte("[]")
	}
	return us.db.PutOAuthUser(ctx, sqlstore.OAuthUser{Username: spec.Username, PasswordHash: hash, FHIRUser: spec.FHIRUser, Roles: roles, Source: source, CreatedAt: us.now()})
}

// Get returns a user or an error wrapping ErrNotFound.
func (us *Users) Get(ctx context.Context, username string) (*User, error) {
	rec, err := us.db.GetOAuthUser(ctx, username)
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		return nil, fmt.Errorf("user: %w", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return userFromRecord(rec)
}

func userFromRecord(rec sqlstore.OAuthUser) (*User, error) {
	u := &User{Username: rec.Username, FHIRUser: rec.FHIRUser, PasswordHash: rec.PasswordHash}
	if err := json.Unmarshal(rec.Roles, &u.Roles); err != nil {
		return nil, fmt.Errorf("authserver: stored user roles: %w", err)
	}
	return u, nil
}

// List returns every user.
func (us *Users) List(ctx context.Context) ([]*User, error) {
	recs, err := us.db.ListOAuthUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*User, 0, len(recs))
	for _, r := range recs {
		u, err := userFromRecord(r)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Delete removes a user, their sessions and grants.
func (us *Users) Delete(ctx context.Context, username string) error {
	err := us.db.DeleteOAuthUser(ctx, username)
	if errors.Is(err, sqlstore.ErrOAuthNotFound) {
		return fmt.Errorf("user: %w", ErrNotFound)
	}
	return err
}

// ErrBadCredentials is the one answer to a failed login, whatever the reason.
var ErrBadCredentials = errors.New("authserver: bad credentials")

// Authenticate checks a username and password. It spends the same argon2id work whether or not
// the user exists.
func (us *Users) Authenticate(ctx context.Context, username, pw string) (*User, error) {
	u, err := us.Get(ctx, username)
	if errors.Is(err, ErrNotFound) {
		_ = password.Verify(us.dummy, pw)
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if err := password.Verify(u.PasswordHash, pw); err != nil {
		return nil, ErrBadCredentials
	}
	return u, nil
}
