package search

import (
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fhirgate/fhirgate/internal/fhir"
)

// Prefixes are the comparators of ordered parameter types (date, number, quantity).
var prefixes = map[string]bool{"eq": true, "ne": true, "gt": true, "lt": true, "ge": true, "le": true, "sa": true, "eb": true, "ap": true}

// splitEscaped splits s at every sep that is not escaped with a backslash. The pieces keep their
// escapes; unescape them once they are split at every level.
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // skip the escaped character
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the backslash before , $ | and \ ("a value that includes any of these
// characters must be escaped with a backslash"). Other backslashes are kept as written.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case ',', '$', '|', '\\':
				b.WriteByte(s[i+1])
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// valueOptions is what value parsing needs from ParseOptions.
type valueOptions struct {
	baseURL string
	now     time.Time
}

// localBase is the base URL with one trailing '/', or "".
func (vo valueOptions) localBase() string {
	if vo.baseURL == "" {
		return ""
	}
	return strings.TrimSuffix(vo.baseURL, "/") + "/"
}

// parseValue parses one value (already split at unescaped commas, still escaped) of parameter p
// with modifier mod. param names the parameter in errors. It returns a 400 *fhir.Error for a
// value that is not valid for the parameter type.
func parseValue(p *Param, mod, raw, param string, vo valueOptions) (Value, error) {
	v := Value{Raw: unescape(raw)}
	if mod == "missing" {
		switch v.Raw {
		case "true":
			v.Missing = true
		case "false":
		default:
			return v, invalidValue(param, v.Raw, "true or false")
		}
		return v, nil
	}
	if v.Raw == "" {
		return v, fhir.Invalid(param, "the search parameter %s has an empty value", param)
	}
	var err error
	switch p.Type {
	case TypeString:
		if mod != "exact" {
			v.Text = Normalize(v.Raw)
		}
	case TypeToken:
		err = parseToken(&v, mod, raw, param)
	case TypeReference:
		err = parseReference(&v, p, mod, raw, param, vo)
	case TypeDate:
		err = parseDateValue(&v, raw, param, vo)
	case TypeNumber:
		err = parseNumberValue(&v, raw, param)
	case TypeQuantity:
		err = parseQuantity(&v, raw, param)
	case TypeURI:
		// uri values are compared as written.
	case TypeComposite:
		err = parseComposite(&v, p, raw, param, vo)
	default:
		err = fhir.Invalid(param, "the search parameter %s (type %s) is not supported", param, p.Type)
	}
	return v, err
}

func invalidValue(param, raw, want string) *fhir.Error {
	return fhir.Invalid(param, "the value %q of search parameter %s is not valid: expected %s", truncate(raw), param, want)
}

// truncate keeps error messages short whatever the client sent.
func truncate(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func parseToken(v *Value, mod, raw, param string) error {
	switch mod {
	case "text":
		v.Text = Normalize(v.Raw)
		return nil
	case "of-type":
		parts := splitEscaped(raw, '|')
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
			return invalidValue(param, v.Raw, "system|code|value (:of-type)")
		}
		v.System, v.Code, v.Identifier, v.HasSystem = unescape(parts[0]), unescape(parts[1]), unescape(parts[2]), true
		return nil
	}
	parts := splitEscaped(raw, '|')
	switch len(parts) {
	case 1:
		v.Code = unescape(parts[0])
	case 2:
		v.System, v.Code, v.HasSystem = unescape(parts[0]), unescape(parts[1]), true
		if v.System == "" && v.Code == "" {
			return invalidValue(param, v.Raw, "code, system|code, |code or system|")
		}
	default:
		return invalidValue(param, v.Raw, "code, system|code, |code or system|")
	}
	return nil
}

func parseReference(v *Value, p *Param, mod, raw, param string, vo valueOptions) error {
	if mod == "identifier" {
		parts := splitEscaped(raw, '|')
		switch len(parts) {
		case 1:
			v.Code = unescape(parts[0])
		case 2:
			v.System, v.Code, v.HasSystem = unescape(parts[0]), unescape(parts[1]), true
		default:
			return invalidValue(param, v.Raw, "system|value (:identifier)")
		}
		if v.Code == "" {
			return invalidValue(param, v.Raw, "system|value (:identifier)")
		}
		return nil
	}
	ref := v.Raw
	if base := vo.localBase(); base != "" {
		v.LocalBase = base
		if rest, ok := strings.CutPrefix(ref, base); ok {
			ref = rest
		}
	}
	if strings.Contains(ref, "://") || strings.HasPrefix(ref, "urn:") {
		// Another server's resource or a canonical URL (url|version is compared as written).
		v.RefURL = ref
		return nil
	}
	parts := strings.Split(ref, "/")
	switch {
	case len(parts) == 1:
		v.RefID = parts[0]
	case len(parts) == 2 || (len(parts) == 4 && parts[2] == "_history"):
		// A version-specific reference matches the resource whatever its version.
		v.RefType, v.RefID = parts[0], parts[1]
		if !fhir.IsResourceType(v.RefType) {
			return invalidValue(param, v.Raw, "id, Type/id or an absolute URL")
		}
	default:
		return invalidValue(param, v.Raw, "id, Type/id or an absolute URL")
	}
	if !fhir.ValidID(v.RefID) {
		return invalidValue(param, v.Raw, "id, Type/id or an absolute URL")
	}
	if mod != "" && mod != "missing" {
		// The :Type modifier.
		if v.RefType != "" && v.RefType != mod {
			return fhir.Invalid(param, "the value %q of search parameter %s is not a %s reference", truncate(v.Raw), param, mod)
		}
		v.RefType = mod
	}
	if v.RefType != "" && len(p.Targets) > 0 && !contains(p.Targets, v.RefType) {
		return fhir.Invalid(param, "search parameter %s cannot refer to a %s", param, v.RefType)
	}
	return nil
}

// splitPrefix takes an ordered-type comparator off the front of s, eq by default.
func splitPrefix(s string) (string, string) {
	if len(s) >= 2 && prefixes[s[:2]] {
		return s[:2], s[2:]
	}
	return "eq", s
}

var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+\- ]\d{2}:\d{2})?)?)?)?$`)

func parseDateValue(v *Value, raw, param string, vo valueOptions) error {
	prefix, s := splitPrefix(unescape(raw))
	low, high, ok := DateRange(s)
	if !ok {
		return invalidValue(param, v.Raw, "a date (yyyy, yyyy-mm, yyyy-mm-dd or yyyy-mm-ddThh:mm[:ss[.fff]][Z|±hh:mm]) with an optional prefix (eq, ne, gt, lt, ge, le, sa, eb, ap)")
	}
	v.Prefix, v.Low, v.High = prefix, low, high
	if prefix == "ap" {
		// "ap: the value for the parameter in the resource is approximately the same to the
		// provided value": within 10% of the gap between the value and now, and never less than
		// the value's own precision.
		now := vo.now.UnixMicro()
		gap := max(abs64(now-low), abs64(now-high)) / 10
		v.Low, v.High = satSub(low, gap), satAdd(high, gap)
	}
	return nil
}

// DateRange parses a FHIR date, dateTime or instant and returns the inclusive range of unix
// microseconds UTC that its precision covers. A time without a zone is taken as UTC.
func DateRange(s string) (low, high int64, ok bool) {
	m := dateRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	atoi := func(x string, def int) int {
		if x == "" {
			return def
		}
		n, _ := strconv.Atoi(x)
		return n
	}
	year, month, day := atoi(m[1], 0), atoi(m[2], 1), atoi(m[3], 1)
	hour, minute, sec := atoi(m[4], 0), atoi(m[5], 0), atoi(m[6], 0)
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return 0, 0, false
	}
	loc := time.UTC
	if z := m[8]; z != "" && z != "Z" {
		sign := 1
		if z[0] == '-' {
			sign = -1
		}
		zh, zm := atoi(z[1:3], 0), atoi(z[4:6], 0)
		if zh > 14 || zm > 59 {
			return 0, 0, false
		}
		loc = time.FixedZone("", sign*(zh*3600+zm*60))
	}
	var nanos int
	if f := m[7]; f != "" {
		nanos = atoi((f + "000000000")[:9], 0)
	}
	if sec == 60 {
		sec = 59 // a leap second is kept within its minute
	}
	start := time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc)
	if start.Day() != day {
		return 0, 0, false // 2013-02-30
	}
	var end time.Time
	switch {
	case m[2] == "":
		end = start.AddDate(1, 0, 0)
	case m[3] == "":
		end = start.AddDate(0, 1, 0)
	case m[4] == "":
		end = start.AddDate(0, 0, 1)
	case m[6] == "":
		end = start.Add(time.Minute)
	case m[7] == "":
		end = start.Add(time.Second)
	default:
		step := time.Duration(1)
		for range 9 - len(m[7]) {
			step *= 10
		}
		end = start.Add(max(step, time.Microsecond))
	}
	return start.UnixMicro(), end.UnixMicro() - 1, true
}

var numberRE = regexp.MustCompile(`^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d{1,3}))?$`)

// parseNumber reads a FHIR decimal and the half-width of its implicit precision range.
func parseNumber(s string) (value, half float64, ok bool) {
	m := numberRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, 0, false
	}
	exp := 0
	if m[3] != "" {
		exp, _ = strconv.Atoi(m[3])
	}
	// "the implicit precision of the number ... 100 means [99.5, 100.5)": half a unit of the last
	// significant digit. With an exponent, the digits of the significand count (1e2 is [50, 150)).
	half = 0.5 * math.Pow10(exp-len(m[2]))
	return f, half, true
}

func parseNumberValue(v *Value, raw, param string) error {
	prefix, s := splitPrefix(unescape(raw))
	n, half, ok := parseNumber(s)
	if !ok {
		return invalidValue(param, v.Raw, "a number with an optional prefix (eq, ne, gt, lt, ge, le, sa, eb, ap)")
	}
	setNumber(v, prefix, n, half)
	return nil
}

func setNumber(v *Value, prefix string, n, half float64) {
	v.Prefix, v.Number = prefix, n
	v.NumLow, v.NumHigh = n-half, n+half
	if prefix == "ap" {
		// ap: within 10% of the value (and at least its precision).
		d := max(math.Abs(n)*0.1, half)
		v.NumLow, v.NumHigh = n-d, n+d
	}
}

func parseQuantity(v *Value, raw, param string) error {
	parts := splitEscaped(raw, '|')
	if len(parts) != 1 && len(parts) != 3 {
		return invalidValue(param, v.Raw, "[prefix]number, [prefix]number|system|code or [prefix]number||unit")
	}
	prefix, s := splitPrefix(unescape(parts[0]))
	n, half, ok := parseNumber(s)
	if !ok {
		return invalidValue(param, v.Raw, "[prefix]number, [prefix]number|system|code or [prefix]number||unit")
	}
	setNumber(v, prefix, n, half)
	if len(parts) == 3 {
		v.System, v.Code = unescape(parts[1]), unescape(parts[2])
		v.HasSystem = v.System != ""
	}
	return nil
}

func parseComposite(v *Value, p *Param, raw, param string, vo valueOptions) error {
	if len(p.Components) != 2 || p.Components[0].Param == nil || p.Components[1].Param == nil || p.Components[0].Param.Type != TypeToken {
		return fhir.Invalid(param, "the composite search parameter %s is not supported", param)
	}
	parts := splitEscaped(raw, '$')
	if len(parts) != len(p.Components) {
		return invalidValue(param, v.Raw, "one value per component, separated by $")
	}
	for i, c := range p.Components {
		if c.Param.Type == TypeComposite {
			return fhir.Invalid(param, "the composite search parameter %s is not supported", param)
		}
		cv, err := parseValue(c.Param, "", parts[i], param, vo)
		if err != nil {
			return err
		}
		v.Components = append(v.Components, cv)
	}
	return nil
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
