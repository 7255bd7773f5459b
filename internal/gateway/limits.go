package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// requestLimits is step 7: the request target length (414), the number of query parameters
// (400), the body size (413 at once when Content-Length says so; otherwise the body reader fails
// with *http.MaxBytesError past the limit, which handlers answer with 413), and the group's
// deadline on the request context (handlers answer a context.DeadlineExceeded with 503; one that
// returns without writing anything gets the 503 from here).
// Header size is the server's (gateway.max_header_bytes, see ConfigureServer).
func (g *Gateway) requestLimits(gr *group, next http.Handler) http.Handler {
	maxURL, maxParams, maxBody, timeout := g.cfg.MaxURLLength, g.cfg.MaxQueryParams, gr.bodyLimit, gr.policy.RequestTimeout
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.RequestURI
		if target == "" {
			target = r.URL.RequestURI()
		}
		if len(target) > maxURL {
			writeProblem(w, r, gr, problem{status: http.StatusRequestURITooLong, fhirCode: "too-long", oauthCode: "invalid_request",
				msg: fmt.Sprintf("the request URL is longer than %d bytes; use POST for long searches", maxURL)})
			return
		}
		if n := countParams(r.URL.RawQuery); n > maxParams {
			writeProblem(w, r, gr, problem{status: http.StatusBadRequest, fhirCode: "too-costly", oauthCode: "invalid_request",
				msg: fmt.Sprintf("the request has %d query parameters; at most %d are allowed", n, maxParams)})
			return
		}
		if r.ContentLength > maxBody {
			writeProblem(w, r, gr, problem{status: http.StatusRequestEntityTooLarge, fhirCode: "too-costly", oauthCode: "invalid_request",
				msg: fmt.Sprintf("the request body is larger than %d bytes", maxBody)})
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			// MaxBytesReader tells the server's own ResponseWriter to close the connection once
			// the limit is hit, so the rest of an oversized body is never read: give it that one.
			raw := w
			if tw, ok := w.(*trackingWriter); ok {
				raw = tw.ResponseWriter
			}
			r.Body = http.MaxBytesReader(raw, r.Body, maxBody)
		}
		if timeout <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
		// A handler that gave up on the deadline without answering gets a 503 here.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && r.Context().Err() == nil {
			if tw, ok := w.(*trackingWriter); ok && !tw.wrote {
				w.Header().Set("Retry-After", "1")
				writeProblem(w, r, gr, problem{status: http.StatusServiceUnavailable, fhirCode: "timeout", oauthCode: "temporarily_unavailable",
					msg: fmt.Sprintf("the request took longer than %s", timeout)})
			}
		}
	})
}

// countParams counts the non-empty &-separated fields of a raw query.
func countParams(q string) int {
	if q == "" {
		return 0
	}
	n := 0
	for f := range strings.SplitSeq(q, "&") {
		if f != "" {
			n++
		}
	}
	return n
}
