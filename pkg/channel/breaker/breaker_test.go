package breaker

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
)

// fake is a hand-written provider whose answer a test sets.
type fake struct {
	calls atomic.Int64
	err   atomic.Pointer[error]
}

func (f *fake) Send(context.Context, channel.Message) (channel.Receipt, error) {
	f.calls.Add(1)
	if e := f.err.Load(); e != nil && *e != nil {
		return channel.Receipt{}, *e
	}
	return channel.Receipt{Provider: "fake", ProviderID: "1"}, nil
}
func (f *fake) Idempotent() bool { return false }
func (f *fake) Name() string     { return "fake" }

func (f *fake) set(err error) { f.err.Store(&err) }

func TestBreaker(t *testing.T) {
	provider := &channel.Error{Kind: channel.Retryable, Code: "500", Err: errors.New("server error")}
	debtor := &channel.Error{Kind: channel.Permanent, Code: "21211", Err: errors.New("invalid number")}
	for _, tc := range []struct {
		name     string
		err      error
		n        int
		wantOpen bool
	}{
		{"provider failures trip it after the minimum", provider, 10, true},
		{"fewer than the minimum do not", provider, 9, false},
		{"the debtor's fault never trips it", debtor, 50, false},
		{"unknown outcomes count against the provider", &channel.Error{Kind: channel.Unknown, Err: errors.New("timeout")}, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fake{}
			var changes []string
			b := New(f, Config{MinRequests: 10, FailureRatio: 0.5, CoolDown: time.Hour}, func(_, s string) { changes = append(changes, s) })
			f.set(tc.err)
			for i := 0; i < tc.n; i++ {
				b.Send(context.Background(), channel.Message{})
			}
			ok, until := b.Available()
			if ok == tc.wantOpen {
				t.Fatalf("available %v, want open %v (state %+v)", ok, tc.wantOpen, b.State())
			}
			if !tc.wantOpen {
				return
			}
			calls := f.calls.Load()
			_, err := b.Send(context.Background(), channel.Message{})
			var ce *channel.Error
			if !errors.As(err, &ce) || ce.Kind != channel.Retryable || ce.Code != "breaker_open" || !errors.Is(err, ErrOpen) {
				t.Errorf("send while open: %v, want a retryable breaker_open", err)
			}
			if f.calls.Load() != calls {
				t.Error("the provider was called while the breaker was open")
			}
			if until.Before(time.Now().Add(59*time.Minute)) || len(changes) != 1 || changes[0] != "open" {
				t.Errorf("until %s, changes %v", until, changes)
			}
		})
	}
}

func TestBreakerRecovers(t *testing.T) {
	f := &fake{}
	b := New(f, Config{MinRequests: 2, CoolDown: 50 * time.Millisecond, HalfOpenMax: 1}, nil)
	f.set(&channel.Error{Kind: channel.Retryable, Err: errors.New("down")})
	b.Send(context.Background(), channel.Message{})
	b.Send(context.Background(), channel.Message{})
	if ok, _ := b.Available(); ok {
		t.Fatal("not open")
	}
	time.Sleep(60 * time.Millisecond)
	f.set(nil)
	if _, err := b.Send(context.Background(), channel.Message{}); err != nil {
		t.Fatalf("trial call after the cool-down: %v", err)
	}
	if s := b.State(); s.State != "closed" {
		t.Errorf("state %s after a good trial, want closed", s.State)
	}
}

func TestBreakerQuota(t *testing.T) {
	f := &fake{}
	b := New(f, Config{}, nil)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	b.now = func() time.Time { return now }
	midnight := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	f.set(&channel.Error{Kind: channel.Retryable, Code: "45009", Until: midnight, Err: errors.New("quota")})
	b.Send(context.Background(), channel.Message{})
	f.set(nil)
	_, err := b.Send(context.Background(), channel.Message{})
	var ce *channel.Error
	if !errors.As(err, &ce) || !ce.Until.Equal(midnight) || f.calls.Load() != 1 {
		t.Fatalf("after a quota error: %v, calls %d; want refused until midnight without calling", err, f.calls.Load())
	}
	if s := b.State(); s.State != "open" || !s.OpenUntil.Equal(midnight) {
		t.Errorf("state %+v", s)
	}
	now = midnight
	if _, err := b.Send(context.Background(), channel.Message{}); err != nil || f.calls.Load() != 2 {
		t.Errorf("after midnight: %v, calls %d", err, f.calls.Load())
	}
}
