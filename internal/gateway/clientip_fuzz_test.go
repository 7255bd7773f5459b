package gateway

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

var forwardedSeeds = []string{
	`for=192.0.2.60;proto=http;by=203.0.113.43`,
	`for="[2001:db8:cafe::17]:4711"`,
	`For="_gazonk", for=unknown`,
	`for=192.0.2.43, for=198.51.100.17;proto=https`,
	`for="\"quoted\\"`,
	`for=`, `;;,,`, `"`, `for="[::1`, `for=1.2.3.4%eth0`,
}

// FuzzForwarded: any Forwarded header parses without panicking, into valid unzoned unmapped
// addresses or invalid ones, one hop per comma outside quotes.
func FuzzForwarded(f *testing.F) {
	for _, s := range forwardedSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		for _, hp := range parseForwarded([]string{h}) {
			checkAddr(t, h, hp.addr)
		}
		resolveBoth(t, "Forwarded", h)
	})
}

// FuzzXForwardedFor: the same for X-Forwarded-For, and the client chosen is either the peer or
// an address that appears in the header.
func FuzzXForwardedFor(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1, 10.0.0.1", "[2001:db8::1]:80, garbage", " , ,", "::ffff:1.2.3.4", "fe80::1%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		hops := parseXFF([]string{h})
		if want := strings.Count(h, ",") + 1; len(hops) != want {
			t.Fatalf("parseXFF(%q) = %d hops, want %d", h, len(hops), want)
		}
		for _, hp := range hops {
			checkAddr(t, h, hp.addr)
		}
		resolveBoth(t, "X-Forwarded-For", h)
	})
}

func checkAddr(t *testing.T, h string, a netip.Addr) {
	if a.IsValid() && (a.Zone() != "" || a.Is4In6()) {
		t.Fatalf("header %q gave address %v with a zone or IPv4-mapped", h, a)
	}
}

// resolveBoth resolves the header from a trusted and an untrusted peer: the untrusted peer is
// always the client; from the trusted peer the client is the peer or an address in the header.
func resolveBoth(t *testing.T, name, h string) {
	p := proxyResolver{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, forwarded: name == "Forwarded"}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set(name, h)
	r.RemoteAddr = "203.0.113.1:1"
	if got, _ := p.resolve(r); got != netip.MustParseAddr("203.0.113.1") {
		t.Fatalf("untrusted peer with %s %q resolved to %v", name, h, got)
	}
	r.RemoteAddr = "10.0.0.1:1"
	got, _ := p.resolve(r)
	if got != netip.MustParseAddr("10.0.0.1") && !strings.Contains(strings.ToLower(h), strings.ToLower(got.String())) &&
		!strings.Contains(h, got.StringExpanded()) {
		// An address may be written differently in the header (leading zeros, mapped form);
		// it must still come from some hop.
		found := false
		var hops []hop
		if p.forwarded {
			hops = parseForwarded([]string{h})
		} else {
			hops = parseXFF([]string{h})
		}
		for _, hp := range hops {
			found = found || hp.addr == got
		}
		if !found {
			t.Fatalf("trusted peer with %s %q resolved to %v, which is neither the peer nor a hop", name, h, got)
		}
	}
}
