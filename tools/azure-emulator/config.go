package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

const (
	defaultTenantID      = "72f988bf-0000-0000-0000-000000000001"
	defaultTokenLifetime = 86400
	defaultListen        = "127.0.0.1:0"
	// Real IMDS limits for the managed-identity category (instance-metadata-service.md).
	defaultMaxConcurrent = 5
	defaultMaxRPS        = 20
	// The HTTP stacks the IMDS listener can have (imds.http_stack).
	stackGo      = "go"      // Go's net/http server
	stackWindows = "windows" // a front end that behaves like http.sys (winstack.go)
)

// Config is the emulator's configuration file.
type Config struct {
	TenantID         string         `json:"tenant_id"`
	TokenLifetimeSec int64          `json:"token_lifetime_sec"`
	IMDS             *IMDSConfig    `json:"imds"`
	AAD              *AADConfig     `json:"aad"`
	Proxy            *ListenConfig  `json:"proxy"`
	Control          *ControlConfig `json:"control"`
}

// Identity is one managed identity known to the fake IMDS.
type Identity struct {
	ClientID   string `json:"client_id"`
	ObjectID   string `json:"object_id,omitempty"`
	ResourceID string `json:"resource_id,omitempty"`
}

// IMDSConfig configures the fake IMDS. It is also the body of POST /config/imds, where every
// field is optional and only the given ones are replaced.
type IMDSConfig struct {
	Listen         string          `json:"listen,omitempty"`
	HTTPStack      string          `json:"http_stack,omitempty"` // "go" (default) or "windows"; start-up only
	SystemAssigned *Identity       `json:"system_assigned"`
	UserAssigned   []Identity      `json:"user_assigned"`
	MaxConcurrent  *int            `json:"max_concurrent,omitempty"`
	MaxRPS         *int            `json:"max_rps,omitempty"`
	Instance       json.RawMessage `json:"instance,omitempty"`
}

// AppConfig is one service principal (or ADFS client) known to the fake Azure AD.
type AppConfig struct {
	TenantID       string `json:"tenant_id"`
	ClientID       string `json:"client_id"`
	Secret         string `json:"secret,omitempty"`
	CertificatePEM string `json:"certificate_pem,omitempty"` // a path, or the PEM text itself
	ObjectID       string `json:"object_id,omitempty"`
}

// AADConfig configures the fake Azure AD.
type AADConfig struct {
	Listen   string      `json:"listen,omitempty"`
	TLS      *bool       `json:"tls,omitempty"`
	TLSNames []string    `json:"tls_names,omitempty"` // extra DNS names / IPs for the server certificate
	Apps     []AppConfig `json:"apps"`
}

// ListenConfig is a section that only has a listen address.
type ListenConfig struct {
	Listen string `json:"listen,omitempty"`
}

// ControlConfig configures the control listener.
type ControlConfig struct {
	Listen string `json:"listen,omitempty"`
	Socket *bool  `json:"socket,omitempty"` // also serve on <ready dir>/control.sock (default true)
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

func loadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := decodeStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.normalize(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) normalize() error {
	if c.TenantID == "" {
		c.TenantID = defaultTenantID
	}
	if c.TokenLifetimeSec == 0 {
		c.TokenLifetimeSec = defaultTokenLifetime
	}
	if c.TokenLifetimeSec < 0 {
		return fmt.Errorf("token_lifetime_sec must be positive")
	}
	if c.IMDS != nil {
		if c.IMDS.Listen == "" {
			c.IMDS.Listen = defaultListen
		}
		switch c.IMDS.HTTPStack {
		case "":
			c.IMDS.HTTPStack = stackGo
		case stackGo, stackWindows:
		default:
			return fmt.Errorf("imds.http_stack must be %q or %q, not %q", stackGo, stackWindows, c.IMDS.HTTPStack)
		}
		if err := normalizeIdentities(c.IMDS); err != nil {
			return err
		}
	}
	if c.AAD != nil {
		if c.AAD.Listen == "" {
			c.AAD.Listen = defaultListen
		}
		for i, a := range c.AAD.Apps {
			if a.TenantID == "" || a.ClientID == "" {
				return fmt.Errorf("aad.apps[%d]: tenant_id and client_id are required", i)
			}
			if a.Secret == "" && a.CertificatePEM == "" {
				return fmt.Errorf("aad.apps[%d]: secret or certificate_pem is required", i)
			}
		}
	}
	if c.Proxy != nil && c.Proxy.Listen == "" {
		c.Proxy.Listen = defaultListen
	}
	if c.Control == nil {
		c.Control = &ControlConfig{}
	}
	if c.Control.Listen == "" {
		c.Control.Listen = defaultListen
	}
	return nil
}

// normalizeIdentities checks the identities of an IMDS section and fills in derived defaults:
// object_id from the client_id, and for user-assigned identities a resource_id.
func normalizeIdentities(m *IMDSConfig) error {
	if sa := m.SystemAssigned; sa != nil {
		if sa.ClientID == "" {
			return fmt.Errorf("imds.system_assigned.client_id is required")
		}
		if sa.ObjectID == "" {
			sa.ObjectID = stableGUID("object_id", sa.ClientID)
		}
		sa.ResourceID = ""
	}
	for i := range m.UserAssigned {
		u := &m.UserAssigned[i]
		if u.ClientID == "" {
			return fmt.Errorf("imds.user_assigned[%d].client_id is required", i)
		}
		if u.ObjectID == "" {
			u.ObjectID = stableGUID("object_id", u.ClientID)
		}
		if u.ResourceID == "" {
			u.ResourceID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator" +
				"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-" + strings.ToLower(u.ClientID)
		}
	}
	return nil
}
