package config

// Gateway configures the HTTP protections in front of every route group.
type Gateway struct {
	// MaxBodyBytes caps a request body.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// DefaultGateway returns the gateway defaults.
func DefaultGateway() Gateway {
	return Gateway{MaxBodyBytes: 16 << 20}
}

func (g *Gateway) validate(v *Problems) {
	if g.MaxBodyBytes < 1024 {
		v.Add("gateway.max_body_bytes", "must be at least 1024")
	}
}
