package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// KeySource gives the public keys that may have signed an access token. The authorization
// server's key store implements it (current and recently retired signing keys).
type KeySource interface {
	PublicKeys(ctx context.Context) (jose.JSONWebKeySet, error)
}

// minRSABits is the smallest RSA modulus accepted for verification.
const minRSABits = 2048

// verificationKey is one usable public key.
type verificationKey struct {
	kid string
	// alg is the key's declared algorithm, or empty when the JWK does not say.
	alg string
	key any // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
}

// compatible reports whether k may verify a signature made with alg.
func (k verificationKey) compatible(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch pk := k.key.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case string(jose.ES256):
			return pk.Curve == elliptic.P256()
		case string(jose.ES384):
			return pk.Curve == elliptic.P384()
		case string(jose.ES512):
			return pk.Curve == elliptic.P521()
		}
	case *rsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return pk.N.BitLen() >= minRSABits
		}
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

type keySnapshot struct {
	keys    []verificationKey
	fetched time.Time
}

// keyCache holds the parsed keys of a KeySource. Lookups are lock-free; refreshes are serialised
// and rate limited so that tokens with made-up kids cannot hammer the source.
type keyCache struct {
	source     KeySource
	now        func() time.Time
	maxAge     time.Duration // refresh when the snapshot is older than this
	minRefresh time.Duration // never refresh more often than this for an unknown kid

	snap atomic.Pointer[keySnapshot]
	mu   sync.Mutex // serialises refresh
}

// errNoKey means no (or more than one) key matches the token's kid and alg.
var errNoKey = errors.New("no unique key matches the token's kid and alg")

// lookup returns the one key that may verify a token with this kid and alg.
func (c *keyCache) lookup(ctx context.Context, kid, alg string) (any, error) {
	snap := c.snap.Load()
	if snap == nil || c.now().Sub(snap.fetched) >= c.maxAge {
		var err error
		if snap, err = c.refresh(ctx, snap, 0); err != nil {
			return nil, err
		}
	}
	if k, err := pick(snap.keys, kid, alg); err == nil {
		return k, nil
	}
	// Unknown kid: the signing key may have rotated since the last fetch.
	snap, err := c.refresh(ctx, snap, c.minRefresh)
	if err != nil {
		return nil, err
	}
	return pick(snap.keys, kid, alg)
}

// refresh fetches the key set unless another caller already replaced seen, or seen is younger
// than minAge. On failure it keeps serving a stale snapshot if there is one.
func (c *keyCache) refresh(ctx context.Context, seen *keySnapshot, minAge time.Duration) (*keySnapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.snap.Load()
	if cur != nil && cur != seen {
		return cur, nil // someone refreshed while we waited
	}
	if cur != nil && c.now().Sub(cur.fetched) < minAge {
		return cur, nil
	}
	set, err := c.source.PublicKeys(ctx)
	if err != nil {
		if cur != nil {
			return cur, nil
		}
		return nil, unavailable("the token signing keys are unavailable", err)
	}
	next := &keySnapshot{keys: parseKeySet(set), fetched: c.now()}
	c.snap.Store(next)
	return next, nil
}

// parseKeySet keeps the keys that can verify signatures: public (or the public half of a private
// key), not marked for encryption, and of a supported type. Symmetric keys are never used.
func parseKeySet(set jose.JSONWebKeySet) []verificationKey {
	var out []verificationKey
	for _, k := range set.Keys {
		if !k.Valid() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pub := k.Public()
		if !pub.Valid() {
			continue // symmetric
		}
		switch pub.Key.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
			out = append(out, verificationKey{kid: k.KeyID, alg: k.Algorithm, key: pub.Key})
		}
	}
	return out
}

// pick selects the single key for kid and alg. With a kid, the keys with that kid; without, all
// keys. Zero or several compatible candidates are an error (no guessing between keys).
func pick(keys []verificationKey, kid, alg string) (any, error) {
	var found any
	n := 0
	for _, k := range keys {
		if kid != "" && k.kid != kid {
			continue
		}
		if !k.compatible(alg) {
			continue
		}
		found = k.key
		n++
	}
	if n != 1 {
		return nil, fmt.Errorf("%w (kid %q, alg %s, %d candidates)", errNoKey, kid, alg, n)
	}
	return found, nil
}
