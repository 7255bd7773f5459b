package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/compartment"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/fhirapi"
	"github.com/fhirgate/fhirgate/internal/policy"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// The cost of access enforcement on the FHIR API: the same requests served by the same fhirapi
// over the same store, once with security off and once on, interleaved in one run so that both
// see the same cache and machine state.
//
//   - off: an Authenticator that returns a fixed system/*.rs principal without reading the
//     header, and a Policy that returns a decision computed once for that principal (no
//     narrowing; its filter only checks each resource's type).
//   - on: the real authn.Verifier (ES256, the store as revocation list, as the app wires it)
//     and the real policy.Engine, for a patient/*.rs token of the patient whose data is read.

const enforcementBase = "http://bench.test/fhir"

type enforcementEnv struct {
	off, on  http.Handler
	token    string
	verifier *authn.Verifier
	keys     benchKeys
	pid      string
}

// allowAll is the "off" authenticator and policy.
type allowAll struct {
	principal *authn.Principal
	decisions map[policy.Interaction]policy.Decision
}

func (a *allowAll) Authenticate(context.Context, string) (*authn.Principal, error) {
	return a.principal, nil
}

func (a *allowAll) Evaluate(_ context.Context, in policy.Input) (policy.Decision, error) {
	if d, ok := a.decisions[in.Interaction]; ok {
		return d, nil
	}
	return policy.Decision{Reasons: []policy.Reason{policy.ReasonInteractionUnknown}}, nil
}

type benchKeys struct{ key *ecdsa.PrivateKey }

func (k benchKeys) PublicKeys(context.Context) (jose.JSONWebKeySet, error) {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.key.PublicKey, KeyID: "bench", Algorithm: "ES256", Use: "sig"}}}, nil
}

// noValidation: the benchmark only reads.
type noValidation struct{}

func (noValidation) Validate(string, []byte) error { return nil }

func newEnforcementEnv(b *testing.B) *enforcementEnv {
	b.Helper()
	s, n := openBenchStore(b)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	issuer := strings.TrimSuffix(enforcementBase, "/fhir")
	verifier, err := authn.NewVerifier(authn.Config{Issuer: issuer, Audience: enforcementBase, Keys: benchKeys{key}, Revoker: s})
	if err != nil {
		b.Fatal(err)
	}
	matcher, err := search.NewMatcher(registry)
	if err != nil {
		b.Fatal(err)
	}
	membership, err := compartment.NewMembership(registry, nil)
	if err != nil {
		b.Fatal(err)
	}
	engine, err := policy.New(policy.Config{Registry: registry, Matcher: matcher, Membership: membership, BaseURL: enforcementBase})
	if err != nil {
		b.Fatal(err)
	}
	// The off decisions are the engine's own for a system principal, computed once here.
	scopes, _ := smart.ParseScopes("system/*.rs")
	system := &authn.Principal{Issuer: issuer, Subject: "bench", ClientID: "bench", Scopes: scopes}
	off := &allowAll{principal: system, decisions: map[policy.Interaction]policy.Decision{}}
	q, _, err := search.Parse(registry, []string{"Observation"}, nil, search.ParseOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, in := range []policy.Input{
		{Interaction: policy.Read, Type: "Observation", ID: "x"},
		{Interaction: policy.SearchType, Type: "Observation", Query: q},
	} {
		in.Principal = system
		d, err := engine.Evaluate(context.Background(), in)
		if err != nil || !d.Allow || d.Narrowing != nil {
			b.Fatalf("system decision for %s = %+v, %v", in.Interaction, d, err)
		}
		off.decisions[in.Interaction] = d
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	api := func(authr fhirapi.Authenticator, pol fhirapi.Policy) http.Handler {
		h, err := fhirapi.New(fhirapi.Options{Backend: s, Registry: registry, Validator: noValidation{}, Authenticator: authr, Policy: pol,
			BaseURL: enforcementBase, DefaultCount: 50, MaxCount: 1000, Logger: log})
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	e := &enforcementEnv{off: api(off, off), on: api(verifier, engine), verifier: verifier, keys: benchKeys{key}, pid: patientID(n / 2)}
	e.token = mintBenchToken(b, key, issuer, "launch/patient patient/*.rs", e.pid)
	return e
}

func mintBenchToken(b *testing.B, key *ecdsa.PrivateKey, issuer, scope, patient string) string {
	b.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "bench"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": issuer, "aud": enforcementBase, "sub": "bench-patient", "client_id": "bench-app", "scope": scope, "patient": patient,
		"iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(), "jti": rand.Text(),
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

// serve runs one request through h in process and checks the status and that the answer holds
// want entries of the patient (a search) or the resource (a read).
func (e *enforcementEnv) serve(b *testing.B, h http.Handler, path string, token string) (time.Duration, string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(rec, req)
	d := time.Since(start)
	if rec.Code != http.StatusOK {
		b.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
	}
	return d, rec.Body.String()
}

// enforcementRatio interleaves off and on requests and reports each side's mean and on/off.
func enforcementRatio(b *testing.B, path func(e *enforcementEnv, i int) string, check func(body string) error) {
	e := newEnforcementEnv(b)
	// Both sides must answer the same thing, or the ratio compares different work.
	_, offBody := e.serve(b, e.off, path(e, 0), "ignored")
	_, onBody := e.serve(b, e.on, path(e, 0), e.token)
	if err := check(offBody); err != nil {
		b.Fatalf("off: %v", err)
	}
	if err := check(onBody); err != nil {
		b.Fatalf("on: %v", err)
	}
	var off, on time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := path(e, i)
		if i%2 == 0 {
			d, _ := e.serve(b, e.off, p, "ignored")
			off += d
			d, _ = e.serve(b, e.on, p, e.token)
			on += d
		} else {
			d, _ := e.serve(b, e.on, p, e.token)
			on += d
			d, _ = e.serve(b, e.off, p, "ignored")
			off += d
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(off.Microseconds())/n, "off-µs/op")
	b.ReportMetric(float64(on.Microseconds())/n, "on-µs/op")
	if off > 0 {
		b.ReportMetric(float64(on)/float64(off), "on/off")
	}
}

func BenchmarkEnforcementRead(b *testing.B) {
	enforcementRatio(b, func(e *enforcementEnv, i int) string {
		return fmt.Sprintf("/fhir/Observation/%s-obs-%d", e.pid, i%obsPerPatient)
	}, func(body string) error {
		if !strings.Contains(body, `"resourceType":"Observation"`) {
			return fmt.Errorf("read answered %.200s", body)
		}
		return nil
	})
}

func BenchmarkEnforcementSearch(b *testing.B) {
	enforcementRatio(b, func(e *enforcementEnv, _ int) string {
		return "/fhir/Observation?patient=" + e.pid + "&category=laboratory&_count=50"
	}, func(body string) error {
		if got := strings.Count(body, `"fullUrl"`); got != obsPerPatient/2 {
			return fmt.Errorf("search returned %d entries, want %d", got, obsPerPatient/2)
		}
		return nil
	})
}

type noRevocations struct{}

func (noRevocations) Revoked(context.Context, string) (bool, error) { return false, nil }

// BenchmarkTokenVerify is one access-token verification as every FHIR request pays it
// (signature, claims, revocation lookup in the store), and the same without the revocation
// lookup (signature and claims only).
func BenchmarkTokenVerify(b *testing.B) {
	e := newEnforcementEnv(b)
	issuer := strings.TrimSuffix(enforcementBase, "/fhir")
	offline, err := authn.NewVerifier(authn.Config{Issuer: issuer, Audience: enforcementBase, Keys: e.keys, Revoker: noRevocations{}})
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		v    *authn.Verifier
	}{{"store-revocation", e.verifier}, {"signature-only", offline}} {
		b.Run(v.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				p, err := v.v.Verify(ctx, e.token)
				if err != nil || p.Patient != e.pid {
					b.Fatalf("verify = %v, %v", p, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/verify")
		})
	}
}
