package audit_test

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/config"
)

func TestFromConfig(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := config.DefaultAudit()
	c.Durability = "batch"
	c.File.Path = filepath.Join(t.TempDir(), "audit.jsonl")
	c.Syslog.Network, c.Syslog.Address = "udp", pc.LocalAddr().String()
	c.Webhook.URL, c.Webhook.AuthorizationEnv = "https://siem.example.com/in", "SIEM_AUTH"
	env := map[string]string{"SIEM_AUTH": "Bearer x"}
	o, err := audit.FromConfig(c, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if o.Durability != audit.DurabilityBatch || len(o.Sinks) != 3 || len(o.Detectors) != 4 {
		t.Errorf("FromConfig = durability %s, %d sinks, %d detectors; want batch, 3, 4", o.Durability, len(o.Sinks), len(o.Detectors))
	}
	for _, s := range o.Sinks {
		s.Close()
	}
	if _, err := audit.FromConfig(c, func(string) (string, bool) { return "", false }); err == nil {
		t.Error("FromConfig without the webhook's Authorization variable = nil error")
	}
}
