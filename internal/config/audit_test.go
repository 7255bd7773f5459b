package config

import (
	"strings"
	"testing"
	"time"
)

func auditProblems(a Audit) []string {
	var v Problems
	a.validate(&v)
	return v.list
}

func TestAuditDefaultsValidate(t *testing.T) {
	if p := auditProblems(DefaultAudit()); len(p) != 0 {
		t.Fatalf("DefaultAudit does not validate: %v", p)
	}
}

func TestAuditValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(a *Audit)
		key    string
	}{
		{"durability", func(a *Audit) { a.Durability = "maybe" }, "audit.durability"},
		{"flush interval", func(a *Audit) { a.FlushInterval = 0 }, "audit.flush_interval"},
		{"checkpoint interval", func(a *Audit) { a.CheckpointInterval = time.Millisecond }, "audit.checkpoint_interval"},
		{"file max files", func(a *Audit) { a.File = AuditFile{Path: "x", MaxFiles: 0} }, "audit.file.max_files"},
		{"syslog network", func(a *Audit) { a.Syslog = AuditSyslog{Network: "quic", Address: "h:514"} }, "audit.syslog.network"},
		{"syslog TLS options without tls", func(a *Audit) { a.Syslog = AuditSyslog{Network: "tcp", Address: "h:514", CAFile: "ca.pem"} }, "audit.syslog.network"},
		{"syslog client cert without key", func(a *Audit) {
			a.Syslog = AuditSyslog{Network: "tls", Address: "h:6514", CertFile: "c.pem"}
		}, "audit.syslog.cert_file"},
		{"auditor role empty", func(a *Audit) { a.AuditorRole = "" }, "audit.auditor_role"},
		{"auditor role with space", func(a *Audit) { a.AuditorRole = "audit or" }, "audit.auditor_role"},
		{"sink retry max", func(a *Audit) { a.SinkRetryMax = time.Millisecond }, "audit.sink_retry_max"},
		{"syslog address", func(a *Audit) { a.Syslog = AuditSyslog{Network: "udp", Address: "h"} }, "audit.syslog.address"},
		{"webhook plain http", func(a *Audit) { a.Webhook.URL = "http://siem.example.com/in" }, "audit.webhook.url"},
		{"webhook credentials in URL", func(a *Audit) { a.Webhook.URL = "https://u:p@siem.example.com/in" }, "audit.webhook.url"},
		{"alert window", func(a *Audit) { a.Alerts.DeniedWindow = 0 }, "audit.alerts.denied_window"},
		{"alert threshold", func(a *Audit) { a.Alerts.PatientThreshold = -1 }, "audit.alerts.patient_threshold"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := DefaultAudit()
			tc.mutate(&a)
			p := auditProblems(a)
			if len(p) != 1 || !strings.HasPrefix(p[0], tc.key+":") {
				t.Errorf("validate = %v, want one problem at %s", p, tc.key)
			}
		})
	}
	a := DefaultAudit()
	a.Syslog = AuditSyslog{Network: "tls", Address: "siem.internal:6514", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}
	a.Stdout = true
	a.Webhook.URL = "http://127.0.0.1:9000/in"
	a.Alerts.DeniedThreshold, a.Alerts.DeniedWindow = 0, 0 // disabled
	if p := auditProblems(a); len(p) != 0 {
		t.Errorf("validate = %v, want none", p)
	}
}
