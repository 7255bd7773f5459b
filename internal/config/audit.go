package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Audit configures the audit trail: durability, checkpoints, sinks and alert thresholds.
type Audit struct {
	// Durability is sync (an event is committed before the response is sent) or batch (events
	// are group-committed within flush_interval; a crash loses at most that much).
	Durability string `yaml:"durability"`
	// FlushInterval is the longest an event waits for its commit with batch durability.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxBatch bounds the events committed in one transaction.
	MaxBatch int `yaml:"max_batch"`
	// QueueSize bounds the events waiting for the appender; requests wait when it is full.
	QueueSize int `yaml:"queue_size"`
	// CheckpointInterval is how often the chain head is signed (when it moved).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// CheckpointEntries forces a checkpoint after this many entries.
	CheckpointEntries int `yaml:"checkpoint_entries"`
	// AuditorRole is the user role (the access token's roles claim) that may read and search
	// AuditEvents through the FHIR API, in addition to a scope reaching AuditEvent.
	AuditorRole string `yaml:"auditor_role"`
	// Stdout copies every entry as a JSON line to standard output (container log collectors).
	Stdout bool `yaml:"stdout"`
	// SinkRetryMax caps the wait between retries of a sink that does not accept entries; the
	// entries are kept (in the trail) until it does.
	SinkRetryMax time.Duration `yaml:"sink_retry_max"`
	// File copies every entry to a rotating JSON-lines file.
	File AuditFile `yaml:"file"`
	// Syslog sends every entry to a syslog collector (RFC 5424).
	Syslog AuditSyslog `yaml:"syslog"`
	// Webhook POSTs batches of entries to an HTTP endpoint.
	Webhook AuditWebhook `yaml:"webhook"`
	// Alerts sets the thresholds of the detectors.
	Alerts AuditAlerts `yaml:"alerts"`
}

// AuditFile configures the JSON-lines file sink; an empty path disables it.
type AuditFile struct {
	// Path of the file; relative paths are relative to the working directory.
	Path string `yaml:"path"`
	// MaxBytes rotates the file before it grows past this size; 0 never rotates.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxFiles is how many rotated files are kept.
	MaxFiles int `yaml:"max_files"`
}

// AuditSyslog configures the syslog sink; an empty address disables it.
type AuditSyslog struct {
	// Network is tcp, udp or tls (RFC 5425, usually port 6514).
	Network string `yaml:"network"`
	// Address is host:port of the collector.
	Address string `yaml:"address"`
	// CAFile is a PEM bundle of the CAs trusted for the collector's certificate (tls); the
	// system roots when empty.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key for mutual TLS (tls), both or
	// neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name checked in the collector's certificate (tls); the address's host
	// when empty.
	ServerName string `yaml:"server_name"`
	// Facility is the RFC 5424 facility number (13 = log audit).
	Facility int `yaml:"facility"`
	// Hostname overrides the HOSTNAME field (the machine's name by default).
	Hostname string `yaml:"hostname"`
}

// AuditWebhook configures the webhook sink; an empty URL disables it.
type AuditWebhook struct {
	// URL receives POSTs of JSON lines; https unless the host is loopback.
	URL string `yaml:"url"`
	// AuthorizationEnv names the environment variable holding the Authorization header value.
	AuthorizationEnv string `yaml:"authorization_env"`
	// MaxAttempts bounds the tries per batch.
	MaxAttempts int `yaml:"max_attempts"`
	// Timeout bounds one POST.
	Timeout time.Duration `yaml:"timeout"`
}

// AuditAlerts sets the detector thresholds; a threshold of 0 disables its detector.
type AuditAlerts struct {
	// DeniedThreshold denied requests from one client or IP within DeniedWindow raise an alert.
	DeniedThreshold int           `yaml:"denied_threshold"`
	DeniedWindow    time.Duration `yaml:"denied_window"`
	// LoginFailureThreshold failed logins for one user or from one IP within LoginFailureWindow
	// raise an alert.
	LoginFailureThreshold int           `yaml:"login_failure_threshold"`
	LoginFailureWindow    time.Duration `yaml:"login_failure_window"`
	// PatientThreshold distinct patients read with one token within PatientWindow raise an
	// alert.
	PatientThreshold int           `yaml:"patient_threshold"`
	PatientWindow    time.Duration `yaml:"patient_window"`
	// BreakGlass raises an alert on every use of emergency access.
	BreakGlass bool `yaml:"break_glass"`
}

// DefaultAudit returns the audit defaults: sync durability, a checkpoint a minute, no sinks, and
// every detector on.
func DefaultAudit() Audit {
	return Audit{
		Durability:         "sync",
		FlushInterval:      10 * time.Millisecond,
		MaxBatch:           512,
		QueueSize:          8192,
		CheckpointInterval: time.Minute,
		CheckpointEntries:  10000,
		AuditorRole:        "auditor",
		SinkRetryMax:       30 * time.Second,
		File:               AuditFile{MaxBytes: 100 << 20, MaxFiles: 10},
		Syslog:             AuditSyslog{Network: "tcp", Facility: 13},
		Webhook:            AuditWebhook{MaxAttempts: 5, Timeout: 30 * time.Second},
		Alerts: AuditAlerts{
			DeniedThreshold: 20, DeniedWindow: time.Minute,
			LoginFailureThreshold: 5, LoginFailureWindow: 5 * time.Minute,
			PatientThreshold: 50, PatientWindow: time.Hour,
			BreakGlass: true,
		},
	}
}

func (a *Audit) validate(v *Problems) {
	switch a.Durability {
	case "sync", "batch":
	default:
		v.Add("audit.durability", "must be sync or batch, got %q", a.Durability)
	}
	if a.FlushInterval <= 0 || a.FlushInterval > 10*time.Second {
		v.Add("audit.flush_interval", "must be between 1ns and 10s")
	}
	if a.MaxBatch < 1 {
		v.Add("audit.max_batch", "must be at least 1")
	}
	if a.QueueSize < 1 {
		v.Add("audit.queue_size", "must be at least 1")
	}
	if a.CheckpointInterval < time.Second {
		v.Add("audit.checkpoint_interval", "must be at least 1s")
	}
	if a.CheckpointEntries < 1 {
		v.Add("audit.checkpoint_entries", "must be at least 1")
	}
	if a.AuditorRole == "" || strings.ContainsFunc(a.AuditorRole, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		v.Add("audit.auditor_role", "must be a non-empty role name without spaces")
	}
	if a.SinkRetryMax < 100*time.Millisecond || a.SinkRetryMax > time.Hour {
		v.Add("audit.sink_retry_max", "must be between 100ms and 1h")
	}
	if a.File.Path != "" {
		if a.File.MaxBytes < 0 {
			v.Add("audit.file.max_bytes", "must not be negative")
		}
		if a.File.MaxFiles < 1 {
			v.Add("audit.file.max_files", "must be at least 1")
		}
	}
	if a.Syslog.Address != "" {
		switch a.Syslog.Network {
		case "tcp", "udp":
			if a.Syslog.CAFile != "" || a.Syslog.CertFile != "" || a.Syslog.KeyFile != "" || a.Syslog.ServerName != "" {
				v.Add("audit.syslog.network", "ca_file, cert_file, key_file and server_name need network tls")
			}
		case "tls":
			if (a.Syslog.CertFile == "") != (a.Syslog.KeyFile == "") {
				v.Add("audit.syslog.cert_file", "cert_file and key_file go together")
			}
		default:
			v.Add("audit.syslog.network", "must be tcp, udp or tls, got %q", a.Syslog.Network)
		}
		if _, _, err := net.SplitHostPort(a.Syslog.Address); err != nil {
			v.Add("audit.syslog.address", "must be host:port")
		}
		if a.Syslog.Facility < 0 || a.Syslog.Facility > 23 {
			v.Add("audit.syslog.facility", "must be 0-23")
		}
	}
	if a.Webhook.URL != "" {
		u, err := url.Parse(a.Webhook.URL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			v.Add("audit.webhook.url", "must be an absolute http(s) URL")
		case u.Scheme == "http" && !auditLoopbackHost(u.Hostname()):
			v.Add("audit.webhook.url", "must use https unless the host is loopback")
		case u.User != nil:
			v.Add("audit.webhook.url", "must not hold credentials; use authorization_env")
		}
		if a.Webhook.MaxAttempts < 1 {
			v.Add("audit.webhook.max_attempts", "must be at least 1")
		}
		if a.Webhook.Timeout <= 0 {
			v.Add("audit.webhook.timeout", "must be positive")
		}
	}
	al := a.Alerts
	for _, w := range []struct {
		key       string
		threshold int
		window    time.Duration
	}{
		{"audit.alerts.denied", al.DeniedThreshold, al.DeniedWindow},
		{"audit.alerts.login_failure", al.LoginFailureThreshold, al.LoginFailureWindow},
		{"audit.alerts.patient", al.PatientThreshold, al.PatientWindow},
	} {
		if w.threshold < 0 {
			v.Add(w.key+"_threshold", "must not be negative (0 disables)")
		}
		if w.threshold > 0 && w.window <= 0 {
			v.Add(w.key+"_window", "must be positive")
		}
	}
}

func auditLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
