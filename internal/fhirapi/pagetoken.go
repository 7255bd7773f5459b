package fhirapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
)

// pageParam carries the signed continuation of a search or history in a next link. The link keeps
// the client's own parameters readable; the token binds them, the backend cursor and the caller, so
// a client can neither edit the query of a later page nor reuse another caller's link.
const pageParam = "_page"

// pageSigner signs and checks page tokens with an HMAC key.
type pageSigner struct{ key []byte }

// sign returns the token for cursor continuing the request whose parameters are params, made
// for the caller identified by binding.
func (p pageSigner) sign(path string, params url.Values, cursor, binding string) string {
	c := base64.RawURLEncoding.EncodeToString([]byte(cursor))
	return c + "." + base64.RawURLEncoding.EncodeToString(p.mac(path, params, c, binding))
}

// verify returns the cursor inside token when it was made for exactly this path, these
// parameters and this caller.
func (p pageSigner) verify(path string, params url.Values, token, binding string) (string, bool) {
	c, sig, ok := strings.Cut(token, ".")
	if !ok {
		return "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, p.mac(path, params, c, binding)) {
		return "", false
	}
	cursor, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return "", false
	}
	return string(cursor), true
}

func (p pageSigner) mac(path string, params url.Values, cursor, binding string) []byte {
	m := hmac.New(sha256.New, p.key)
	write := func(s string) {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	write("fhirgate-page-v1")
	write(path)
	write(binding)
	write(cursor)
	keys := make([]string, 0, len(params))
	for k := range params {
		if k != pageParam {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		write(k)
		for _, v := range params[k] {
			write(v)
		}
		write("")
	}
	return m.Sum(nil)
}
