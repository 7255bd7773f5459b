package audit

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/fhirgate/fhirgate/internal/config"
)

// FromConfig builds the parts of the trail options that the configuration decides: durability,
// batching, checkpoints, sinks and detectors. The caller adds Store, Signer, Source, Logger and Now,
// and opens the trail. lookup reads the environment variable holding the webhook's Authorization
// value. On error, sinks already opened are closed.
func FromConfig(c config.Audit, lookup func(string) (string, bool)) (Options, error) {
	o := Options{
		Durability:         Durability(c.Durability),
		FlushInterval:      c.FlushInterval,
		MaxBatch:           c.MaxBatch,
		QueueSize:          c.QueueSize,
		CheckpointInterval: c.CheckpointInterval,
		CheckpointEntries:  c.CheckpointEntries,
		SinkRetryMax:       c.SinkRetryMax,
	}
	fail := func(err error) (Options, error) {
		var errs []error
		for _, s := range o.Sinks {
			errs = append(errs, s.Close())
		}
		return Options{}, errors.Join(append([]error{err}, errs...)...)
	}
	if c.Stdout {
		o.Sinks = append(o.Sinks, NewWriterSink("stdout", os.Stdout))
	}
	if c.File.Path != "" {
		s, err := NewFileSink(c.File.Path, c.File.MaxBytes, c.File.MaxFiles)
		if err != nil {
			return fail(err)
		}
		o.Sinks = append(o.Sinks, s)
	}
	if c.Syslog.Address != "" {
		so := SyslogOptions{Network: c.Syslog.Network, Address: c.Syslog.Address, Facility: syslogFacility(c.Syslog.Facility), Hostname: c.Syslog.Hostname}
		if c.Syslog.Network == "tls" {
			tc, err := syslogTLS(c.Syslog)
			if err != nil {
				return fail(err)
			}
			so.TLS = tc
		}
		s, err := NewSyslogSink(so)
		if err != nil {
			return fail(err)
		}
		o.Sinks = append(o.Sinks, s)
	}
	if c.Webhook.URL != "" {
		var auth string
		if c.Webhook.AuthorizationEnv != "" && lookup != nil {
			v, ok := lookup(c.Webhook.AuthorizationEnv)
			if !ok || v == "" {
				return fail(fmt.Errorf("audit: webhook: environment variable %s is not set", c.Webhook.AuthorizationEnv))
			}
			auth = v
		}
		s, err := NewWebhookSink(WebhookOptions{URL: c.Webhook.URL, Authorization: auth, MaxAttempts: c.Webhook.MaxAttempts,
			Client: &http.Client{Timeout: c.Webhook.Timeout}})
		if err != nil {
			return fail(err)
		}
		o.Sinks = append(o.Sinks, s)
	}
	a := c.Alerts
	if a.DeniedThreshold > 0 {
		o.Detectors = append(o.Detectors, NewDeniedBurst(a.DeniedWindow, a.DeniedThreshold))
	}
	if a.LoginFailureThreshold > 0 {
		o.Detectors = append(o.Detectors, NewLoginFailures(a.LoginFailureWindow, a.LoginFailureThreshold))
	}
	if a.PatientThreshold > 0 {
		o.Detectors = append(o.Detectors, NewPatientSpread(a.PatientWindow, a.PatientThreshold))
	}
	if a.BreakGlass {
		o.Detectors = append(o.Detectors, BreakGlass{})
	}
	return o, nil
}

// syslogFacility maps the configured facility (0 is kern) to SyslogOptions (where 0 means the
// default and -1 means kern).
func syslogFacility(f int) int {
	if f == 0 {
		return -1
	}
	return f
}

// syslogTLS builds the TLS client configuration of the syslog sink from PEM files.
func syslogTLS(c config.AuditSyslog) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("audit: syslog ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("audit: syslog ca_file %s holds no PEM certificate", c.CAFile)
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("audit: syslog client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
