package email

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok := Config{Addr: "smtp.bank.example:587", From: testFrom, Username: "u", Password: "p"}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"no auth", func(c *Config) { c.Username, c.Password = "", "" }, ""},
		{"implicit tls", func(c *Config) { c.TLS = TLSImplicit }, ""},
		{"none with AllowPlaintext", func(c *Config) { c.TLS, c.AllowPlaintext = TLSNone, true }, ""},
		{"dkim", func(c *Config) { c.DKIMKey, c.DKIMSelector = testEd25519Key(t), "s1" }, ""},
		{"none without AllowPlaintext", func(c *Config) { c.TLS = TLSNone }, "AllowPlaintext"},
		{"unknown tls mode", func(c *Config) { c.TLS = "ssl" }, `"ssl"`},
		{"no addr", func(c *Config) { c.Addr = "" }, "Addr is required"},
		{"addr without port", func(c *Config) { c.Addr = "smtp.bank.example" }, "host:port"},
		{"addr with bad port", func(c *Config) { c.Addr = "smtp.bank.example:smtp" }, "bad port"},
		{"no from", func(c *Config) { c.From = "" }, "From is required"},
		{"from not an address", func(c *Config) { c.From = "示例银行" }, "From"},
		{"from with non-ASCII address", func(c *Config) { c.From = "银行 <通知@bank.example>" }, "ASCII"},
		{"user without password", func(c *Config) { c.Password = "" }, "go together"},
		{"pool sized", func(c *Config) { c.PoolSize, c.MaxMessagesPerConn = 16, 1 }, ""},
		{"negative pool size", func(c *Config) { c.PoolSize = -1 }, "PoolSize"},
		{"negative message cap", func(c *Config) { c.MaxMessagesPerConn = -1 }, "MaxMessagesPerConn"},
		{"dkim key without selector", func(c *Config) { c.DKIMKey = testEd25519Key(t) }, "DKIMSelector"},
		{"dkim file without selector", func(c *Config) { c.DKIMKeyFile = "/k.pem" }, "DKIMSelector"},
		{"dkim ecdsa key", func(c *Config) { c.DKIMKey, c.DKIMSelector = ec, "s1" }, "RSA or Ed25519"},
		{"dkim bad domain", func(c *Config) { c.DKIMKey, c.DKIMSelector, c.DKIMDomain = testEd25519Key(t), "s1", "a b" }, "DKIMDomain"},
		{"mailto with a name", func(c *Config) { c.UnsubscribeMailto = "Bank <u@bank.example>" }, "UnsubscribeMailto"},
		{"mailto not an address", func(c *Config) { c.UnsubscribeMailto = "unsubscribe" }, "UnsubscribeMailto"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
		{"hello name with a space", func(c *Config) { c.HelloName = "mx 1" }, "HelloName"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := New(c); err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate: %v, want an error about %q", err, tt.wantErr)
			}
			if _, err := New(c); err == nil {
				t.Fatal("New accepted what Validate refuses")
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	m, err := New(Config{Addr: "smtp.bank.example:587", From: testFrom})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.TLS != TLSStartTLS || m.cfg.Timeout != DefaultTimeout || m.cfg.HelloName != DefaultHelloName {
		t.Errorf("defaults: TLS %q Timeout %v HelloName %q", m.cfg.TLS, m.cfg.Timeout, m.cfg.HelloName)
	}
	if m.fromDomain != "bank.example" || m.dkim != nil {
		t.Errorf("from domain %q, dkim %v", m.fromDomain, m.dkim)
	}
}
