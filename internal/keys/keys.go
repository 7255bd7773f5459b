package keys

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// Purpose says what a key is for.
type Purpose string

// The key purposes.
const (
	// PurposeAccess keys sign access tokens (ES256).
	PurposeAccess Purpose = "access"
	// PurposeID keys sign ID tokens (RS256, as SMART requires).
	PurposeID Purpose = "id"
	// PurposeHMAC is the 32-byte secret that keys the HMAC of authorization codes and refresh
	// tokens. It is not published.
	PurposeHMAC Purpose = "hmac"
)

// Errors of the package.
var (
	// ErrNoKey means no usable key exists for a purpose or kid.
	ErrNoKey = errors.New("keys: no such key")
	// ErrKEK means the key-encryption key is missing, malformed or unprotected.
	ErrKEK = errors.New("keys: key-encryption key")
)

// Store is the persistence the manager needs; *sqlstore.Store implements it.
type Store interface {
	PutOAuthKey(ctx context.Context, k sqlstore.OAuthKey) error
	RetireOAuthKeys(ctx context.Context, purpose, keep string, now time.Time) error
	ListOAuthKeys(ctx context.Context) ([]sqlstore.OAuthKey, error)
	DeleteOAuthKeysRetiredBefore(ctx context.Context, t time.Time) error
}

var _ Store = (*sqlstore.Store)(nil)

// Options configures a Manager.
type Options struct {
	Store Store
	// KEK is the 32-byte key-encryption key (LoadKEK).
	KEK []byte
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger; slog.Default when nil.
	Logger *slog.Logger
	// RotateEvery is the age after which Maintain rotates the access and ID signing keys; zero
	// disables automatic rotation.
	RotateEvery time.Duration
	// Overlap is how long a rotated-out key stays published (and accepted for verification). It
	// must exceed the longest lifetime of a token it signed; 48h when zero.
	Overlap time.Duration
	// Reload is how often Maintain rereads the store to see rotations made by other processes
	// (the CLI); one minute when zero.
	Reload time.Duration
}

// Key is one usable key.
type Key struct {
	KID     string
	Purpose Purpose
	// Alg is ES256, RS256 or HS256 (the HMAC secret).
	Alg string
	// Signer is the private key of a signing key.
	Signer crypto.Signer
	// Secret is the HMAC secret.
	Secret      []byte
	CreatedAt   time.Time
	ActivatesAt time.Time
	RetiredAt   time.Time
	public      *jose.JSONWebKey
}

// Manager holds the keys in memory and persists them. It is safe for concurrent use.
type Manager struct {
	opts Options
	aead cipher.AEAD

	mu     sync.RWMutex
	keys   []*Key
	loaded time.Time
	// rotMu serialises rotations within the process.
	rotMu sync.Mutex
	// onRotate is told of every rotation (SetRotationHook).
	hookMu   sync.RWMutex
	onRotate RotationHook
}

// Rotation describes one rotation for the RotationHook.
type Rotation struct {
	Purpose Purpose
	// KID is the new key's id; empty when the rotation failed.
	KID string
	// Automatic is set for the rotations Maintain makes because a key reached RotateEvery.
	Automatic bool
	// Err is why the rotation failed, nil on success.
	Err error
}

// RotationHook is told of every rotation this Manager makes (Rotate and Maintain's automatic
// rotation, not the creation of the first keys in Open). It runs on the rotating goroutine after
// the rotation finished, with the caller's context; it must not rotate keys itself.
type RotationHook func(ctx context.Context, r Rotation)

// SetRotationHook installs fn as the rotation hook (nil removes it), replacing any earlier one.
// The authorization server uses it to audit key rotations.
func (m *Manager) SetRotationHook(fn RotationHook) {
	m.hookMu.Lock()
	m.onRotate = fn
	m.hookMu.Unlock()
}

// Open loads the keys and creates the first key of every purpose that has none.
func Open(ctx context.Context, opts Options) (*Manager, error) {
	if opts.Store == nil {
		return nil, errors.New("keys: a store is required")
	}
	if len(opts.KEK) != 32 {
		return nil, fmt.Errorf("%w: must be 32 bytes", ErrKEK)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Overlap <= 0 {
		opts.Overlap = 48 * time.Hour
	}
	if opts.Reload <= 0 {
		opts.Reload = time.Minute
	}
	block, err := aes.NewCipher(opts.KEK)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKEK, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKEK, err)
	}
	m := &Manager{opts: opts, aead: aead}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	for _, p := range []Purpose{PurposeAccess, PurposeID, PurposeHMAC} {
		if _, err := m.Current(p); errors.Is(err, ErrNoKey) {
			if _, err := m.rotate(ctx, p); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// load rereads every key from the store.
func (m *Manager) load(ctx context.Context) error {
	recs, err := m.opts.Store.ListOAuthKeys(ctx)
	if err != nil {
		return fmt.Errorf("keys: load: %w", err)
	}
	var ks []*Key
	for _, r := range recs {
		k, err := m.decode(r)
		if err != nil {
			return err
		}
		ks = append(ks, k)
	}
	m.mu.Lock()
	m.keys = ks
	m.loaded = m.opts.Now()
	m.mu.Unlock()
	return nil
}

func (m *Manager) decode(r sqlstore.OAuthKey) (*Key, error) {
	plain, err := m.aead.Open(nil, r.PrivateEnc[:min(len(r.PrivateEnc), m.aead.NonceSize())], r.PrivateEnc[min(len(r.PrivateEnc), m.aead.NonceSize()):], aad(r.KID, r.Purpose))
	if err != nil {
		return nil, fmt.Errorf("%w: cannot decrypt key %s (wrong key-encryption key?)", ErrKEK, r.KID)
	}
	k := &Key{KID: r.KID, Purpose: Purpose(r.Purpose), Alg: r.Alg, CreatedAt: r.CreatedAt, ActivatesAt: r.ActivatesAt, RetiredAt: r.RetiredAt}
	switch k.Purpose {
	case PurposeHMAC:
		k.Secret = plain
	case PurposeAccess, PurposeID:
		priv, err := x509.ParsePKCS8PrivateKey(plain)
		if err != nil {
			return nil, fmt.Errorf("keys: key %s: %w", r.KID, err)
		}
		s, ok := priv.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("keys: key %s is not a signing key", r.KID)
		}
		k.Signer = s
		k.public = &jose.JSONWebKey{Key: s.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
	default:
		return nil, fmt.Errorf("keys: key %s has unknown purpose %q", r.KID, r.Purpose)
	}
	return k, nil
}

func aad(kid, purpose string) []byte { return []byte("fhirgate-key\x00" + purpose + "\x00" + kid) }

// Rotate makes a new current key for purpose and retires the previous one, which stays published
// and accepted for verification for the overlap period. It returns the new key id. The rotation
// hook, if any, is told of the result.
func (m *Manager) Rotate(ctx context.Context, p Purpose) (string, error) {
	return m.rotateNotify(ctx, p, false)
}

// rotateNotify rotates and tells the hook.
func (m *Manager) rotateNotify(ctx context.Context, p Purpose, automatic bool) (string, error) {
	kid, err := m.rotate(ctx, p)
	m.hookMu.RLock()
	fn := m.onRotate
	m.hookMu.RUnlock()
	if fn != nil {
		fn(ctx, Rotation{Purpose: p, KID: kid, Automatic: automatic, Err: err})
	}
	return kid, err
}

func (m *Manager) rotate(ctx context.Context, p Purpose) (string, error) {
	m.rotMu.Lock()
	defer m.rotMu.Unlock()
	now := m.opts.Now().UTC()
	var plain []byte
	var alg string
	var pub []byte
	switch p {
	case PurposeAccess:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", fmt.Errorf("keys: generate: %w", err)
		}
		alg = string(jose.ES256)
		if plain, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return "", fmt.Errorf("keys: %w", err)
		}
		if pub, err = thumbprintJSON(k.Public(), alg); err != nil {
			return "", err
		}
	case PurposeID:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", fmt.Errorf("keys: generate: %w", err)
		}
		alg = string(jose.RS256)
		if plain, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return "", fmt.Errorf("keys: %w", err)
		}
		if pub, err = thumbprintJSON(k.Public(), alg); err != nil {
			return "", err
		}
	case PurposeHMAC:
		plain = make([]byte, 32)
		if _, err := rand.Read(plain); err != nil {
			return "", fmt.Errorf("keys: generate: %w", err)
		}
		alg = "HS256"
	default:
		return "", fmt.Errorf("keys: unknown purpose %q", p)
	}
	kid := newKID(p, pub, plain)
	nonce := make([]byte, m.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	enc := m.aead.Seal(nonce, nonce, plain, aad(kid, string(p)))
	rec := sqlstore.OAuthKey{KID: kid, Purpose: string(p), Alg: alg, PrivateEnc: enc, PublicJWK: pub, CreatedAt: now, ActivatesAt: now}
	if err := m.opts.Store.PutOAuthKey(ctx, rec); err != nil {
		return "", err
	}
	if err := m.opts.Store.RetireOAuthKeys(ctx, string(p), kid, now); err != nil {
		return "", err
	}
	if err := m.load(ctx); err != nil {
		return "", err
	}
	m.opts.Logger.Info("rotated key", "purpose", string(p), "kid", kid, "alg", alg)
	return kid, nil
}

// newKID is a short random-looking id; for public keys it is the RFC 7638 thumbprint prefix.
func newKID(p Purpose, pub, plain []byte) string {
	var sum [32]byte
	if len(pub) > 0 {
		sum = sha256.Sum256(pub)
	} else {
		r := make([]byte, 16)
		_, _ = rand.Read(r)
		sum = sha256.Sum256(r)
	}
	return string(p)[:1] + "-" + base64.RawURLEncoding.EncodeToString(sum[:12])
}

func thumbprintJSON(pub crypto.PublicKey, alg string) ([]byte, error) {
	j := jose.JSONWebKey{Key: pub, Algorithm: alg, Use: "sig"}
	tp, err := j.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: thumbprint: %w", err)
	}
	j.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return json.Marshal(j)
}

// Current returns the key that signs now for purpose: the newest activated, unretired key.
func (m *Manager) Current(p Purpose) (*Key, error) {
	now := m.opts.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var best *Key
	for _, k := range m.keys {
		if k.Purpose != p || !k.RetiredAt.IsZero() || k.ActivatesAt.After(now) {
			continue
		}
		if best == nil || k.ActivatesAt.After(best.ActivatesAt) || (k.ActivatesAt.Equal(best.ActivatesAt) && k.CreatedAt.After(best.CreatedAt)) {
			best = k
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w for %s", ErrNoKey, p)
	}
	return best, nil
}

// published reports whether k is still published and accepted at now.
func (m *Manager) published(k *Key, now time.Time) bool {
	return k.RetiredAt.IsZero() || now.Before(k.RetiredAt.Add(m.opts.Overlap))
}

// Verifier returns the public key with kid for purpose if it is published, for verifying tokens
// this server signed.
func (m *Manager) Verifier(p Purpose, kid string) (*jose.JSONWebKey, error) {
	now := m.opts.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, k := range m.keys {
		if k.KID == kid && k.Purpose == p && k.public != nil && m.published(k, now) {
			return k.public, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrNoKey, kid)
}

// HMACSecrets returns the current HMAC secret and the retired ones still within the overlap.
func (m *Manager) HMACSecrets() (current []byte, rotated [][]byte, err error) {
	cur, err := m.Current(PurposeHMAC)
	if err != nil {
		return nil, nil, err
	}
	now := m.opts.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, k := range m.keys {
		if k.Purpose == PurposeHMAC && k != cur && m.published(k, now) {
			rotated = append(rotated, k.Secret)
		}
	}
	return cur.Secret, rotated, nil
}

// JWKS is the public key set: every published access-token and ID-token key (current, pending
// and recently rotated out), as bare JWKs.
func (m *Manager) JWKS() jose.JSONWebKeySet {
	now := m.opts.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var set jose.JSONWebKeySet
	for _, k := range m.keys {
		if k.public != nil && m.published(k, now) {
			set.Keys = append(set.Keys, *k.public)
		}
	}
	return set
}

// Info describes a key for listings; it carries no secret.
type Info struct {
	KID         string    `json:"kid"`
	Purpose     Purpose   `json:"purpose"`
	Alg         string    `json:"alg"`
	CreatedAt   time.Time `json:"created_at"`
	ActivatesAt time.Time `json:"activates_at"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
	Current     bool      `json:"current"`
	Published   bool      `json:"published"`
}

// List describes every key, oldest first.
func (m *Manager) List() []Info {
	now := m.opts.Now()
	cur := map[string]bool{}
	for _, p := range []Purpose{PurposeAccess, PurposeID, PurposeHMAC} {
		if k, err := m.Current(p); err == nil {
			cur[k.KID] = true
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Info, 0, len(m.keys))
	for _, k := range m.keys {
		out = append(out, Info{KID: k.KID, Purpose: k.Purpose, Alg: k.Alg, CreatedAt: k.CreatedAt, ActivatesAt: k.ActivatesAt,
			RetiredAt: k.RetiredAt, Current: cur[k.KID], Published: k.public != nil && m.published(k, now)})
	}
	slices.SortStableFunc(out, func(a, b Info) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// Maintain rereads the store when the in-memory copy is older than the reload interval, rotates
// signing keys older than RotateEvery and forgets keys past their overlap. It is cheap when
// nothing is due; call it outside any open store transaction.
func (m *Manager) Maintain(ctx context.Context) error {
	now := m.opts.Now()
	m.mu.RLock()
	stale := now.Sub(m.loaded) >= m.opts.Reload
	m.mu.RUnlock()
	if stale {
		if err := m.load(ctx); err != nil {
			return err
		}
		if err := m.opts.Store.DeleteOAuthKeysRetiredBefore(ctx, now.Add(-m.opts.Overlap)); err != nil {
			return err
		}
	}
	if m.opts.RotateEvery <= 0 {
		return nil
	}
	for _, p := range []Purpose{PurposeAccess, PurposeID} {
		k, err := m.Current(p)
		if err != nil {
			return err
		}
		if now.Sub(k.ActivatesAt) >= m.opts.RotateEvery {
			// Another instance sharing the store may have rotated since the last reload: look
			// again before rotating, so that instances do not each make a key.
			if k, err = m.freshCurrent(ctx, p); err != nil {
				return err
			}
		}
		if now.Sub(k.ActivatesAt) >= m.opts.RotateEvery {
			if _, err := m.rotateNotify(ctx, p, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// PublicKeys returns the published access-token keys (current, pending and recently rotated
// out), for verifiers of access tokens in the same process (internal/authn's KeySource). ID-token
// keys are left out so that an ID token can never pass as an access token.
func (m *Manager) PublicKeys(ctx context.Context) (jose.JSONWebKeySet, error) {
	m.reloadIfOlder(ctx, publicKeysFreshness)
	now := m.opts.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	var set jose.JSONWebKeySet
	for _, k := range m.keys {
		if k.Purpose == PurposeAccess && k.public != nil && m.published(k, now) {
			set.Keys = append(set.Keys, *k.public)
		}
	}
	if len(set.Keys) == 0 {
		return set, ErrNoKey
	}
	return set, nil
}
