package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// CheckpointType is the JWS "typ" header of a checkpoint. It keeps a checkpoint from being taken
// for any other JWS the same key signs (access tokens), and the other way round.
const CheckpointType = "fhirgate-audit-checkpoint+jws"

// Signer signs a checkpoint payload and returns a compact JWS.
type Signer interface {
	Sign(payload []byte) (jws string, err error)
}

// CheckpointVerifier checks a compact JWS and returns its payload.
type CheckpointVerifier interface {
	Verify(jws string) (payload []byte, err error)
}

// Checkpoint is the signed statement "the chain had Seq entries and its head hash was Head at
// Time".
type Checkpoint struct {
	Seq  int64     `json:"seq"`
	Head string    `json:"head"` // hex SHA-256 of entry Seq
	Time time.Time `json:"time"`
	// Origin names the log (the server's observer name), so checkpoints of two servers cannot be
	// mixed up.
	Origin string `json:"origin"`
}

// ParseCheckpoint decodes a checkpoint payload strictly: unknown fields, a bad hash or a
// non-positive sequence are errors.
func ParseCheckpoint(payload []byte) (Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Checkpoint{}, fmt.Errorf("audit: checkpoint payload: %w", err)
	}
	if dec.More() {
		return Checkpoint{}, errors.New("audit: checkpoint payload: trailing data")
	}
	if c.Seq <= 0 {
		return Checkpoint{}, errors.New("audit: checkpoint payload: seq must be positive")
	}
	if h, err := hex.DecodeString(c.Head); err != nil || len(h) != HashSize {
		return Checkpoint{}, errors.New("audit: checkpoint payload: head must be a hex SHA-256")
	}
	if c.Time.IsZero() {
		return Checkpoint{}, errors.New("audit: checkpoint payload: time is missing")
	}
	return c, nil
}

// SigningKey is a private key with its key id.
type SigningKey struct {
	KID string
	Key crypto.Signer
}

// JOSESigner signs checkpoints as compact JWS with the key current at each call (so key rotation
// needs nothing here). The algorithm follows the key: ES256/ES384/ES512 for P-256/384/521, RS256
// for RSA, EdDSA for Ed25519.
type JOSESigner struct {
	current func() (SigningKey, error)
}

// NewJOSESigner returns a Signer over the key that current returns.
func NewJOSESigner(current func() (SigningKey, error)) *JOSESigner {
	return &JOSESigner{current: current}
}

// Sign implements Signer.
func (s *JOSESigner) Sign(payload []byte) (string, error) {
	k, err := s.current()
	if err != nil {
		return "", fmt.Errorf("audit: checkpoint key: %w", err)
	}
	alg, err := algFor(k.Key.Public())
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType(CheckpointType)
	if k.KID != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), k.KID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k.Key}, opts)
	if err != nil {
		return "", fmt.Errorf("audit: checkpoint signer: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return obj.CompactSerialize()
}

func algFor(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	case *rsa.PublicKey:
		return jose.RS256, nil
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("audit: unsupported checkpoint key type %T", pub)
}

// allowedAlgs are the only algorithms a checkpoint may use.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.EdDSA}

// KeySetVerifier verifies checkpoints against a JSON Web Key Set: the key is chosen by kid, the
// algorithm must be in the allow-list and match the key, and the typ header must be
// CheckpointType.
type KeySetVerifier struct {
	keys jose.JSONWebKeySet
}

// NewKeySetVerifier returns a verifier trusting exactly the public keys of set.
func NewKeySetVerifier(set jose.JSONWebKeySet) *KeySetVerifier {
	var pub jose.JSONWebKeySet
	for _, k := range set.Keys {
		if k.IsPublic() {
			pub.Keys = append(pub.Keys, k)
		} else {
			pub.Keys = append(pub.Keys, k.Public())
		}
	}
	return &KeySetVerifier{keys: pub}
}

// ParseKeySet decodes a JWKS document.
func ParseKeySet(data []byte) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return set, fmt.Errorf("audit: JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return set, errors.New("audit: JWKS has no keys")
	}
	return set, nil
}

// ErrUnknownKey means a checkpoint names a key the verifier does not have, for example a key
// rotated out and deleted before the verifier's key set was exported.
var ErrUnknownKey = errors.New("audit: checkpoint signed by an unknown key")

// Verify implements CheckpointVerifier.
func (v *KeySetVerifier) Verify(jws string) ([]byte, error) {
	obj, err := jose.ParseSignedCompact(jws, allowedAlgs)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint JWS: %w", err)
	}
	if len(obj.Signatures) != 1 {
		return nil, errors.New("audit: checkpoint JWS must have one signature")
	}
	h := obj.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != CheckpointType {
		return nil, fmt.Errorf("audit: checkpoint JWS typ %q, want %q", typ, CheckpointType)
	}
	var candidates []jose.JSONWebKey
	if h.KeyID != "" {
		candidates = v.keys.Key(h.KeyID)
	} else {
		candidates = v.keys.Keys
	}
	if len(candidates) == 0 {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, h.KeyID)
	}
	for _, k := range candidates {
		alg, err := algFor(k.Key)
		if err != nil || string(alg) != h.Algorithm {
			continue
		}
		if payload, err := obj.Verify(k); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("audit: checkpoint signature does not verify")
}

// signCheckpoint makes the JWS of a checkpoint.
func signCheckpoint(s Signer, c Checkpoint) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return s.Sign(payload)
}
