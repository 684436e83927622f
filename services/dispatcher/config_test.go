package main

import (
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel/sandbox"
)

// TestConfigConnections reads the variables that size providers'
// connections and the sandbox's latency.
func TestConfigConnections(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	t.Run("defaults", func(t *testing.T) {
		c, err := configFromEnv(env(nil), true)
		if err != nil {
			t.Fatal(err)
		}
		if c.SMTP.PoolSize != 4 || c.SMTP.MaxMessagesPerConn != 100 {
			t.Errorf("SMTP pool %d, cap %d; want 4 and 100", c.SMTP.PoolSize, c.SMTP.MaxMessagesPerConn)
		}
		for _, ch := range []string{"sms", "voice", "email", "wechat"} {
			if c.Concurrency[ch] != DefaultConcurrency {
				t.Errorf("%s concurrency %d, want %d", ch, c.Concurrency[ch], DefaultConcurrency)
			}
		}
		if c.SandboxLatency != (sandbox.Latency{}) {
			t.Errorf("sandbox latency %v, want none", c.SandboxLatency)
		}
	})
	t.Run("set", func(t *testing.T) {
		c, err := configFromEnv(env(map[string]string{
			"DISPATCHER_SMTP_POOL_SIZE": "8", "DISPATCHER_SMTP_MAX_MESSAGES_PER_CONN": "1",
			"DISPATCHER_SMS_CONCURRENCY": "200", "DISPATCHER_WECHAT_CONCURRENCY": "16",
			"DISPATCHER_SANDBOX_LATENCY": "lognormal:150ms:800ms",
		}), true)
		if err != nil {
			t.Fatal(err)
		}
		if c.SMTP.PoolSize != 8 || c.SMTP.MaxMessagesPerConn != 1 {
			t.Errorf("SMTP pool %d, cap %d; want 8 and 1", c.SMTP.PoolSize, c.SMTP.MaxMessagesPerConn)
		}
		if c.Concurrency["sms"] != 200 || c.Concurrency["wechat"] != 16 || c.Concurrency["voice"] != DefaultConcurrency {
			t.Errorf("concurrency %v", c.Concurrency)
		}
		if want := (sandbox.Latency{P50: 150 * time.Millisecond, P99: 800 * time.Millisecond}); c.SandboxLatency != want {
			t.Errorf("sandbox latency %v, want %v", c.SandboxLatency, want)
		}
	})
	for name, vars := range map[string]map[string]string{
		"DISPATCHER_SMTP_POOL_SIZE":             {"DISPATCHER_SMTP_POOL_SIZE": "0"},
		"DISPATCHER_SMTP_MAX_MESSAGES_PER_CONN": {"DISPATCHER_SMTP_MAX_MESSAGES_PER_CONN": "many"},
		"DISPATCHER_EMAIL_CONCURRENCY":          {"DISPATCHER_EMAIL_CONCURRENCY": "-3"},
		"DISPATCHER_SANDBOX_LATENCY":            {"DISPATCHER_SANDBOX_LATENCY": "lognormal:800ms:150ms"},
	} {
		t.Run("bad "+name, func(t *testing.T) {
			_, err := configFromEnv(env(vars), true)
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("err %v, want one naming %s", err, name)
			}
		})
	}
}
