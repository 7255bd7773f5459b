package fhir

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// unavailable reports whether err is a failure to reach a service the request needs (a network
// error from the database driver: refused, reset, closed, timed out) rather than a fault of the
// request or the server: the client may retry, so the answer is 503, not 500.
func unavailable(err error) bool {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
