package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SyslogOptions configures a SyslogSink.
type SyslogOptions struct {
	// Network is "tcp", "udp" or "tls" (RFC 5425: TCP with TLS, octet-counting framing; the
	// collector's usual port is 6514).
	Network string
	// TLS configures the "tls" network: the collector's CA (RootCAs; the system pool when nil),
	// a client certificate for mutual TLS, ServerName (the address's host when empty).
	// TLS 1.2 is the minimum.
	TLS *tls.Config
	// Address is host:port of the collector.
	Address string
	// Facility is the RFC 5424 facility number; 13 (log audit) when zero. Use -1 for 0 (kern)
	// if ever needed.
	Facility int
	// Hostname is the HOSTNAME field; os.Hostname when empty.
	Hostname string
	// AppName is the APP-NAME field; "fhirgate" when empty.
	AppName string
	// Timeout bounds a dial or a write; 5s when zero.
	Timeout time.Duration
	// Now is the clock for the TIMESTAMP field; time.Now when nil.
	Now func() time.Time
}

// SyslogSink sends each entry as one RFC 5424 message: MSGID is the action, structured data
// [fhirgate@32473 seq outcome hash] (32473 is the documentation enterprise number of RFC 5612:
// replace it when an enterprise number is registered), MSG the AuditEvent JSON. Over TCP and TLS
// messages are framed by octet counting (RFC 6587 §3.4.1, RFC 5425 §4.3); over UDP each message is
// one datagram.
type SyslogSink struct {
	opts  SyslogOptions
	procs string

	mu   sync.Mutex
	conn net.Conn
}

// maxUDPMessage keeps a datagram within what IPv4 UDP carries.
const maxUDPMessage = 65000

// NewSyslogSink checks the options; the collector is dialled at the first write (and again after
// a connection fails).
func NewSyslogSink(opts SyslogOptions) (*SyslogSink, error) {
	if opts.Network != "tcp" && opts.Network != "udp" && opts.Network != "tls" {
		return nil, fmt.Errorf("audit: syslog network must be tcp, udp or tls, got %q", opts.Network)
	}
	host, _, err := net.SplitHostPort(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("audit: syslog address: %w", err)
	}
	if opts.Network == "tls" {
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.TLS != nil {
			c = opts.TLS.Clone()
			c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
		}
		if c.ServerName == "" {
			c.ServerName = host
		}
		opts.TLS = c
	}
	if opts.Facility == 0 {
		opts.Facility = 13
	} else if opts.Facility < 0 {
		opts.Facility = 0
	}
	if opts.Facility > 23 {
		return nil, fmt.Errorf("audit: syslog facility %d out of range 0-23", opts.Facility)
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	if opts.AppName == "" {
		opts.AppName = "fhirgate"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &SyslogSink{opts: opts, procs: strconv.Itoa(os.Getpid())}, nil
}

// Name implements Sink.
func (s *SyslogSink) Name() string { return "syslog" }

// severity of an entry: alerts are alert (1), errors error (3), denials and failures notice (5),
// the rest informational (6).
func severity(e Event) int {
	switch {
	case e.Action == ActionAlert:
		return 1
	case e.Outcome == OutcomeError:
		return 3
	case e.Outcome == OutcomeDenied || e.Outcome == OutcomeFailure || e.BreakGlass:
		return 5
	default:
		return 6
	}
}

// FormatSyslog renders one entry as an RFC 5424 message (without transport framing).
func (s *SyslogSink) FormatSyslog(e Entry) []byte {
	var b strings.Builder
	pri := s.opts.Facility*8 + severity(e.Event)
	b.WriteString("<" + strconv.Itoa(pri) + ">1 ")
	b.WriteString(s.opts.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	b.WriteByte(' ')
	b.WriteString(syslogField(s.opts.Hostname, 255))
	b.WriteByte(' ')
	b.WriteString(syslogField(s.opts.AppName, 48))
	b.WriteByte(' ')
	b.WriteString(syslogField(s.procs, 128))
	b.WriteByte(' ')
	b.WriteString(syslogField(string(e.Event.Action), 32))
	b.WriteString(` [fhirgate@32473 seq="` + strconv.FormatInt(e.Seq, 10) + `" outcome="` + sdEscape(string(e.Event.Outcome)) +
		`" hash="` + sdEscape(e.Hash) + `"]`)
	msg := e.AuditEvent
	if s.opts.Network == "udp" && b.Len()+4+len(msg) > maxUDPMessage {
		// Too large for a datagram: send the header alone; the store has the whole event.
		return []byte(b.String() + " \ufeff{\"truncated\":true}")
	}
	b.WriteString(" \ufeff") // BOM: MSG is UTF-8 (RFC 5424 §6.4)
	b.Write(msg)
	return []byte(b.String())
}

// syslogField returns v as a header field: printable US-ASCII without spaces, at most n
// characters, "-" when empty.
func syslogField(v string, n int) string {
	var b strings.Builder
	for i := 0; i < len(v) && b.Len() < n; i++ {
		if c := v[i]; c > 32 && c < 127 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes a structured-data parameter value (RFC 5424 §6.3.3).
func sdEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(v)
}

// Write implements Sink: one message per entry; on a connection error it reconnects once and
// resends the rest of the batch. Over a stream (tcp, tls), a connection the collector closed is
// noticed before the batch is written (syslog has no acknowledgements: without this check the
// first messages written after the collector went away would vanish into the socket buffer).
// What a collector that died without closing received is unknown, so delivery is at least once:
// receivers can drop a seq they already have.
func (s *SyslogSink) Write(ctx context.Context, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stream := s.opts.Network != "udp"
	if s.conn != nil && stream && !connAlive(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	i := 0
	for attempt := 0; attempt < 2 && i < len(entries); attempt++ {
		if s.conn == nil {
			c, err := s.dial(ctx)
			if err != nil {
				return fmt.Errorf("audit: syslog dial: %w", err)
			}
			s.conn = c
		}
		for ; i < len(entries); i++ {
			msg := s.FormatSyslog(entries[i])
			if stream {
				msg = append([]byte(strconv.Itoa(len(msg))+" "), msg...)
			}
			_ = s.conn.SetWriteDeadline(time.Now().Add(s.opts.Timeout))
			if _, err := s.conn.Write(msg); err != nil {
				s.conn.Close()
				s.conn = nil
				if attempt == 1 || ctx.Err() != nil {
					return fmt.Errorf("audit: syslog write: %w", err)
				}
				break
			}
		}
	}
	if i < len(entries) {
		return errors.New("audit: syslog: batch not delivered")
	}
	return nil
}

func (s *SyslogSink) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{Timeout: s.opts.Timeout}
	if s.opts.Network == "tls" {
		td := &tls.Dialer{NetDialer: d, Config: s.opts.TLS}
		return td.DialContext(ctx, "tcp", s.opts.Address)
	}
	return d.DialContext(ctx, s.opts.Network, s.opts.Address)
}

// connAlive reports whether the collector has not closed c: collectors send nothing, so a read
// that does not time out at once means end of stream or an error.
func connAlive(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err == nil || (errors.As(err, &ne) && ne.Timeout())
}

// Close implements Sink.
func (s *SyslogSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
