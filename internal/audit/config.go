package audit

import (
	"errors"
	"fmt"
	"net/http"

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
	}
	fail := func(err error) (Options, error) {
		var errs []error
		for _, s := range o.Sinks {
			errs = append(errs, s.Close())
		}
		return Options{}, errors.Join(append([]error{err}, errs...)...)
	}
	if c.File.Path != "" {
		s, err := NewFileSink(c.File.Path, c.File.MaxBytes, c.File.MaxFiles)
		if err != nil {
			return fail(err)
		}
		o.Sinks = append(o.Sinks, s)
	}
	if c.Syslog.Address != "" {
		s, err := NewSyslogSink(SyslogOptions{Network: c.Syslog.Network, Address: c.Syslog.Address, Facility: syslogFacility(c.Syslog.Facility), Hostname: c.Syslog.Hostname})
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
