package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// EnvPrefix starts every environment variable fhirgate reads for configuration.
const EnvPrefix = "FHIRGATE_"

// ApplyEnv overlays FHIRGATE_* variables on cfg. Every scalar key has one (storage.dsn →
// FHIRGATE_STORAGE_DSN); lists of strings take comma-separated values; lists of structs (clients,
// users) come only from the file. lookup is os.LookupEnv in production.
func ApplyEnv(cfg *Config, lookup func(string) (string, bool)) error {
	var p Problems
	walkEnv(reflect.ValueOf(cfg).Elem(), "", lookup, &p)
	return p.Err()
}

// EnvKeys lists every config key that an environment variable can set, with its variable name.
func EnvKeys() [][2]string {
	var out [][2]string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := yamlKey(f)
			if key == "" {
				continue
			}
			full := prefix + key
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
				walk(f.Type, full+".")
				continue
			}
			if isEnvSettable(f.Type) {
				out = append(out, [2]string{full, envName(full)})
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}

func walkEnv(v reflect.Value, prefix string, lookup func(string) (string, bool), p *Problems) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := yamlKey(f)
		if key == "" {
			continue
		}
		full := prefix + key
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			walkEnv(fv, full+".", lookup, p)
			continue
		}
		if !isEnvSettable(f.Type) {
			continue
		}
		raw, ok := lookup(envName(full))
		if !ok {
			continue
		}
		if err := setScalar(fv, raw); err != nil {
			p.Add(full, "from %s: %v", envName(full), err)
		}
	}
}

func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

func isEnvSettable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

func setScalar(v reflect.Value, raw string) error {
	if v.Type() == reflect.TypeOf(time.Duration(0)) {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", raw)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", raw)
		}
		v.SetInt(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", raw)
		}
		v.SetFloat(n)
	case reflect.Slice:
		var parts []string
		for s := range strings.SplitSeq(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				parts = append(parts, s)
			}
		}
		v.Set(reflect.ValueOf(parts).Convert(v.Type()))
	}
	return nil
}
