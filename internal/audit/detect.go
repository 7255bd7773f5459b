package audit

import (
	"fmt"
	"strconv"
	"time"
)

// Detector watches committed events and returns the alerts they raise. Detectors run on one
// goroutine and need no locking; they must keep bounded state.
type Detector interface {
	Observe(e Event) []Alert
}

// Alert is a suspicious pattern found by a detector.
type Alert struct {
	// Detector names the detector; it is the alert's reason code.
	Detector string
	// Key is what the alert is about: "client:app", "ip:10.0.0.1", "user:alice", "token:jti".
	Key string
	// Time is the time of the event that raised it.
	Time time.Time
	// Count is how many events (or distinct patients) were seen within Window.
	Count  int
	Window time.Duration
	Detail string
	// Trigger is the event that raised the alert.
	Trigger Event
}

// Event is the audit event recording the alert.
func (a Alert) Event() Event {
	return Event{
		Time:      a.Time,
		Action:    ActionAlert,
		Outcome:   OutcomeSuccess,
		Reasons:   []string{a.Detector},
		Detail:    a.Key + ": " + a.Detail,
		ClientID:  a.Trigger.ClientID,
		Subject:   a.Trigger.Subject,
		FHIRUser:  a.Trigger.FHIRUser,
		SourceIP:  a.Trigger.SourceIP,
		TokenID:   a.Trigger.TokenID,
		RequestID: a.Trigger.RequestID,
		Tenant:    a.Trigger.Tenant,
		Count:     -1,
	}
}

// maxKeys bounds the keys one detector tracks; beyond it, idle keys are swept, and if none are
// idle new keys are not tracked until some are (so a flood of spoofed keys costs bounded memory).
const maxKeys = 100000

// burst counts events per key in a sliding window and fires once per window per key when a key
// reaches threshold events. It keeps only the last threshold timestamps of each key.
type burst struct {
	window    time.Duration
	threshold int
	keys      map[string]*burstKey
}

type burstKey struct {
	times     []time.Time // ring of the last threshold event times
	next      int
	last      time.Time
	lastAlert time.Time
}

func newBurst(window time.Duration, threshold int) *burst {
	return &burst{window: window, threshold: max(threshold, 1), keys: map[string]*burstKey{}}
}

// add records an event of key at t and returns the count in the window when it fires, else 0.
func (b *burst) add(key string, t time.Time) int {
	k := b.keys[key]
	if k == nil {
		if len(b.keys) >= maxKeys {
			b.sweep(t)
			if len(b.keys) >= maxKeys {
				return 0
			}
		}
		k = &burstKey{times: make([]time.Time, 0, b.threshold)}
		b.keys[key] = k
	}
	if len(k.times) < b.threshold {
		k.times = append(k.times, t)
	} else {
		k.times[k.next] = t
		k.next = (k.next + 1) % b.threshold
	}
	if t.After(k.last) {
		k.last = t
	}
	if len(k.times) < b.threshold {
		return 0
	}
	oldest := k.times[k.next%len(k.times)]
	if t.Sub(oldest) >= b.window {
		return 0
	}
	if !k.lastAlert.IsZero() && t.Sub(k.lastAlert) < b.window {
		return 0
	}
	k.lastAlert = t
	return b.threshold
}

func (b *burst) sweep(now time.Time) {
	for key, k := range b.keys {
		if now.Sub(k.last) >= b.window && now.Sub(k.lastAlert) >= b.window {
			delete(b.keys, key)
		}
	}
}

// DeniedBurst alerts when one client or one IP address has Threshold denied requests within
// Window.
type DeniedBurst struct {
	byClient, byIP *burst
}

// NewDeniedBurst returns the detector.
func NewDeniedBurst(window time.Duration, threshold int) *DeniedBurst {
	return &DeniedBurst{byClient: newBurst(window, threshold), byIP: newBurst(window, threshold)}
}

// Observe implements Detector.
func (d *DeniedBurst) Observe(e Event) []Alert {
	if e.Outcome != OutcomeDenied || e.Action == ActionLogin {
		return nil
	}
	var out []Alert
	if e.ClientID != "" {
		if n := d.byClient.add(e.ClientID, e.Time); n > 0 {
			out = append(out, Alert{Detector: "denied-burst", Key: "client:" + e.ClientID, Time: e.Time, Count: n, Window: d.byClient.window,
				Detail: fmt.Sprintf("%d denied requests within %s", n, d.byClient.window), Trigger: e})
		}
	}
	if e.SourceIP != "" {
		if n := d.byIP.add(e.SourceIP, e.Time); n > 0 {
			out = append(out, Alert{Detector: "denied-burst", Key: "ip:" + e.SourceIP, Time: e.Time, Count: n, Window: d.byIP.window,
				Detail: fmt.Sprintf("%d denied requests within %s", n, d.byIP.window), Trigger: e})
		}
	}
	return out
}

// LoginFailures alerts when one username or one IP address has Threshold failed logins within
// Window (password guessing, credential stuffing).
type LoginFailures struct {
	byUser, byIP *burst
}

// NewLoginFailures returns the detector.
func NewLoginFailures(window time.Duration, threshold int) *LoginFailures {
	return &LoginFailures{byUser: newBurst(window, threshold), byIP: newBurst(window, threshold)}
}

// Observe implements Detector.
func (d *LoginFailures) Observe(e Event) []Alert {
	if e.Action != ActionLogin || e.Outcome == OutcomeSuccess {
		return nil
	}
	var out []Alert
	if e.Subject != "" {
		if n := d.byUser.add(e.Subject, e.Time); n > 0 {
			out = append(out, Alert{Detector: "login-failures", Key: "user:" + e.Subject, Time: e.Time, Count: n, Window: d.byUser.window,
				Detail: fmt.Sprintf("%d failed logins within %s", n, d.byUser.window), Trigger: e})
		}
	}
	if e.SourceIP != "" {
		if n := d.byIP.add(e.SourceIP, e.Time); n > 0 {
			out = append(out, Alert{Detector: "login-failures", Key: "ip:" + e.SourceIP, Time: e.Time, Count: n, Window: d.byIP.window,
				Detail: fmt.Sprintf("%d failed logins within %s", n, d.byIP.window), Trigger: e})
		}
	}
	return out
}

// BreakGlass alerts on every use of emergency access: an ActionBreakGlass event or any request
// made under break-glass.
type BreakGlass struct{}

// Observe implements Detector.
func (BreakGlass) Observe(e Event) []Alert {
	if e.Action != ActionBreakGlass && !e.BreakGlass {
		return nil
	}
	who := firstNonEmpty(e.FHIRUser, e.Subject, e.ClientID, "unknown")
	detail := "emergency access (" + string(e.Action)
	if e.ResourceType != "" {
		detail += " " + e.ResourceType
	}
	if len(e.Patients) > 0 {
		detail += ", patients " + strconv.Itoa(len(e.Patients))
	}
	detail += ") by " + who
	return []Alert{{Detector: "break-glass", Key: "user:" + who, Time: e.Time, Count: 1, Detail: detail, Trigger: e}}
}

// PatientSpread alerts when one token (or, without a token id, one client and user) reads
// resources of Threshold distinct patients within Window: bulk harvesting through an app meant
// for one patient at a time.
type PatientSpread struct {
	window    time.Duration
	threshold int
	keys      map[string]*spreadKey
}

type spreadKey struct {
	seen      map[string]time.Time // patient -> last seen
	last      time.Time
	lastAlert time.Time
}

// NewPatientSpread returns the detector.
func NewPatientSpread(window time.Duration, threshold int) *PatientSpread {
	return &PatientSpread{window: window, threshold: max(threshold, 2), keys: map[string]*spreadKey{}}
}

// Observe implements Detector.
func (d *PatientSpread) Observe(e Event) []Alert {
	if e.Outcome != OutcomeSuccess || len(e.Patients) == 0 || !e.Action.IsREST() {
		return nil
	}
	key := "token:" + e.TokenID
	if e.TokenID == "" {
		if e.ClientID == "" && e.Subject == "" {
			return nil
		}
		key = "client:" + e.ClientID + " user:" + e.Subject
	}
	k := d.keys[key]
	if k == nil {
		if len(d.keys) >= maxKeys {
			for kk, v := range d.keys {
				if e.Time.Sub(v.last) >= d.window {
					delete(d.keys, kk)
				}
			}
			if len(d.keys) >= maxKeys {
				return nil
			}
		}
		k = &spreadKey{seen: map[string]time.Time{}}
		d.keys[key] = k
	}
	k.last = e.Time
	for _, p := range e.Patients {
		k.seen[p] = e.Time
	}
	if len(k.seen) >= d.threshold {
		for p, at := range k.seen {
			if e.Time.Sub(at) >= d.window {
				delete(k.seen, p)
			}
		}
	}
	n := len(k.seen)
	if n < d.threshold || (!k.lastAlert.IsZero() && e.Time.Sub(k.lastAlert) < d.window) {
		if n > 4*d.threshold { // bound memory: keep the alert state, forget the set
			clear(k.seen)
		}
		return nil
	}
	k.lastAlert = e.Time
	return []Alert{{Detector: "patient-spread", Key: key, Time: e.Time, Count: n, Window: d.window,
		Detail: fmt.Sprintf("%d distinct patients within %s", n, d.window), Trigger: e}}
}
