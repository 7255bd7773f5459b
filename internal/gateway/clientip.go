package gateway

import (
	"net/http"
	"net/netip"
	"strings"
)

// proxyResolver finds the client address of a request. The forwarding header is read only when
// the TCP peer is a trusted proxy, and then walked from the right (the hop our proxy appended)
// leftwards past further trusted proxies: the first untrusted address is the client. Entries left
// of it were written by the client and are never believed.
type proxyResolver struct {
	trusted   []netip.Prefix
	forwarded bool // RFC 7239 Forwarded instead of X-Forwarded-For / X-Forwarded-Proto
}

func (p *proxyResolver) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, pre := range p.trusted {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

func (p *proxyResolver) trustedPeer(r *http.Request) bool {
	return len(p.trusted) > 0 && p.isTrusted(peerAddr(r))
}

// peerAddr is the TCP peer of r, invalid when RemoteAddr is not an IP address (a unix socket).
func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, err := netip.ParseAddr(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}
		}
		return a.Unmap().WithZone("")
	}
	return ap.Addr().Unmap().WithZone("")
}

// resolve returns the client address and whether the client used HTTPS.
func (p *proxyResolver) resolve(r *http.Request) (netip.Addr, bool) {
	peer := peerAddr(r)
	secure := r.TLS != nil
	if len(p.trusted) == 0 || !p.isTrusted(peer) {
		return peer, secure
	}
	var hops []hop
	if p.forwarded {
		hops = parseForwarded(r.Header.Values("Forwarded"))
	} else {
		hops = parseXFF(r.Header.Values("X-Forwarded-For"))
		if proto := lastListValue(r.Header.Values("X-Forwarded-Proto")); proto != "" {
			secure = strings.EqualFold(proto, "https")
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		if !h.addr.IsValid() {
			// Garbage or "unknown" where a trusted proxy should have written an address: stop at
			// the last hop we trust rather than guess.
			break
		}
		if p.forwarded && h.proto != "" && i == len(hops)-1 {
			secure = strings.EqualFold(h.proto, "https")
		}
		client = h.addr
		if !p.isTrusted(h.addr) {
			break
		}
	}
	return client, secure
}

// clientIP is step 3: it records the client address and scheme in the Scope.
func (g *Gateway) clientIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := ScopeFrom(r.Context())
		s.ClientIP, s.Secure = g.proxies.resolve(r)
		next.ServeHTTP(w, r)
	})
}

// hop is one entry of a forwarding header.
type hop struct {
	addr  netip.Addr // invalid for unknown, obfuscated or malformed entries
	proto string     // Forwarded proto=, if any
}

// parseXFF parses X-Forwarded-For lines, in order: comma-separated addresses, optionally with a
// port ("192.0.2.1:443", "[2001:db8::1]:443").
func parseXFF(lines []string) []hop {
	var out []hop
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ",") {
			out = append(out, hop{addr: parseNode(strings.TrimSpace(part))})
		}
	}
	return out
}

// parseNode parses an address as proxies write it: bare IPv4 or IPv6, IPv4:port, [IPv6] or
// [IPv6]:port. Anything else (RFC 7239 "unknown", obfuscated "_id", zones) is invalid.
func parseNode(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Addr{}
		}
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Addr().Zone() != "" {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		a, err := netip.ParseAddr(s[1 : len(s)-1])
		if err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// parseForwarded parses RFC 7239 Forwarded lines: forwarded-element *( "," forwarded-element ),
// each element pairs token=value separated by ";", values tokens or quoted strings. An element
// without a usable for= yields an invalid address.
func parseForwarded(lines []string) []hop {
	var out []hop
	for _, line := range lines {
		for _, elem := range splitQuoted(line, ',') {
			var h hop
			for _, pair := range splitQuoted(elem, ';') {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok {
					continue
				}
				v = unquote(strings.TrimSpace(v))
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "for":
					h.addr = parseNode(v)
				case "proto":
					h.proto = v
				}
			}
			out = append(out, h)
		}
	}
	return out
}

// splitQuoted splits s at sep outside double quotes, honouring backslash escapes inside them.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	start, inQuote := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	v = v[1 : len(v)-1]
	if !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// lastListValue is the last element of a comma-separated header over all its lines.
func lastListValue(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	last := lines[len(lines)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.TrimSpace(last)
}
