package twilio

import (
	"context"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
)

// sender is the worker's view of an adapter, with the name on breakers.
type sender interface {
	Send(ctx context.Context, m channel.Message) (channel.Receipt, error)
	Idempotent() bool
	Name() string
}

var (
	_ sender = (*SMS)(nil)
	_ sender = (*Voice)(nil)
)

const (
	testSID     = "AC0123456789abcdef0123456789abcdef"
	testToken   = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
	testFrom    = "+15005550006"
	testService = "MG0123456789abcdef0123456789abcdef"
	testHook    = "https://dispatch.example.cn/webhooks/twilio/status"
	debtor      = "+8613800138000"
)

var fixedNow = time.Date(2026, 11, 23, 1, 30, 0, 0, time.UTC)

func newServer(t *testing.T) *twiliotest.Server {
	t.Helper()
	srv := twiliotest.NewServer(testSID, testToken)
	t.Cleanup(srv.Close)
	return srv
}

func config(srv *twiliotest.Server) Config {
	return Config{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: srv.URL(), StatusCallbackURL: testHook}
}

func newSMS(t *testing.T, cfg Config) *SMS {
	t.Helper()
	s, err := NewSMS(cfg)
	if err != nil {
		t.Fatalf("NewSMS: %v", err)
	}
	s.c.now = func() time.Time { return fixedNow }
	return s
}

func newVoice(t *testing.T, cfg Config) *Voice {
	t.Helper()
	v, err := NewVoice(cfg)
	if err != nil {
		t.Fatalf("NewVoice: %v", err)
	}
	v.c.now = func() time.Time { return fixedNow }
	return v
}
