// Package breaker puts a provider behind its own circuit breaker
// (sony/gobreaker v2), so one provider's outage is noticed, stops being
// called, and never stops another channel. Only the provider's failures
// count: a bad number or an unsubscribed recipient (a permanent error) is
// the debtor's, not the provider's. A provider that says it refuses
// everything until some time (a spent daily quota) keeps its breaker open
// until then.
package breaker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/contactd/dispatcher/pkg/channel"
)

// Sender is a provider adapter.
type Sender interface {
	Send(ctx context.Context, m channel.Message) (channel.Receipt, error)
	Idempotent() bool
	Name() string
}

// Config tunes a breaker.
type Config struct {
	MinRequests  uint32        // requests in the window before it may trip; default 10
	FailureRatio float64       // trips at this share of failures; default 0.5
	Window       time.Duration // closed-state counting window; default 60s
	CoolDown     time.Duration // open → half-open after this; default 30s
	HalfOpenMax  uint32        // trial requests when half-open; default 3
}

func (c *Config) defaults() {
	if c.MinRequests == 0 {
		c.MinRequests = 10
	}
	if c.FailureRatio == 0 {
		c.FailureRatio = 0.5
	}
	if c.Window == 0 {
		c.Window = 60 * time.Second
	}
	if c.CoolDown == 0 {
		c.CoolDown = 30 * time.Second
	}
	if c.HalfOpenMax == 0 {
		c.HalfOpenMax = 3
	}
}

// ErrOpen is returned, wrapped in a Retryable channel.Error, while the
// breaker does not let calls through. Nothing reached the provider.
var ErrOpen = errors.New("circuit breaker open")

// Breaker wraps a Sender.
type Breaker struct {
	next Sender
	cb   *gobreaker.CircuitBreaker[channel.Receipt]
	cfg  Config
	now  func() time.Time

	mu         sync.Mutex
	openedAt   time.Time
	quotaUntil time.Time
	onChange   func(provider string, state string)
	lat        [256]time.Duration // the latest calls' durations, a ring
	nlat       int
}

// New puts next behind a breaker. onChange, if set, hears every state
// change ("closed", "half-open", "open").
func New(next Sender, cfg Config, onChange func(provider, state string)) *Breaker {
	cfg.defaults()
	b := &Breaker{next: next, cfg: cfg, now: time.Now, onChange: onChange}
	b.cb = gobreaker.NewCircuitBreaker[channel.Receipt](gobreaker.Settings{
		Name:        next.Name(),
		MaxRequests: cfg.HalfOpenMax,
		Interval:    cfg.Window,
		Timeout:     cfg.CoolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= cfg.MinRequests && float64(c.TotalFailures) >= cfg.FailureRatio*float64(c.Requests)
		},
		IsSuccessful: func(err error) bool {
			// The debtor's fault is a success for the provider.
			return err == nil || channel.KindOf(err) == channel.Permanent
		},
		IsExcluded: func(err error) bool {
			// Our own shutdown says nothing about the provider.
			return errors.Is(err, context.Canceled)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			b.mu.Lock()
			if to == gobreaker.StateOpen {
				b.openedAt = b.now()
			}
			b.mu.Unlock()
			if b.onChange != nil {
				b.onChange(next.Name(), to.String())
			}
		},
	})
	return b
}

// Name is the provider's name.
func (b *Breaker) Name() string { return b.next.Name() }

// Idempotent is the provider's.
func (b *Breaker) Idempotent() bool { return b.next.Idempotent() }

// IdempotencyWindow is the provider's (0: it recognises a repeat for good).
func (b *Breaker) IdempotencyWindow() time.Duration {
	if x, ok := b.next.(interface{ IdempotencyWindow() time.Duration }); ok {
		return x.IdempotencyWindow()
	}
	return 0
}

// Send calls the provider unless the breaker is open.
func (b *Breaker) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	if until := b.quota(); !until.IsZero() {
		return channel.Receipt{}, &channel.Error{Kind: channel.Retryable, Code: "quota", Until: until, Err: ErrOpen}
	}
	r, err := b.cb.Execute(func() (channel.Receipt, error) {
		start := time.Now()
		r, err := b.next.Send(ctx, m)
		b.mu.Lock()
		b.lat[b.nlat%len(b.lat)] = time.Since(start)
		b.nlat++
		b.mu.Unlock()
		return r, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return channel.Receipt{}, &channel.Error{Kind: channel.Retryable, Code: "breaker_open", Until: b.reopens(), Err: ErrOpen}
	}
	var ce *channel.Error
	if errors.As(err, &ce) && !ce.Until.IsZero() {
		b.mu.Lock()
		if ce.Until.After(b.quotaUntil) {
			b.quotaUntil = ce.Until
		}
		b.mu.Unlock()
		if b.onChange != nil {
			b.onChange(b.next.Name(), "open")
		}
	}
	return r, err
}

// quota returns when a provider-wide refusal ends, or zero.
func (b *Breaker) quota() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.quotaUntil.IsZero() {
		return time.Time{}
	}
	if !b.now().Before(b.quotaUntil) {
		b.quotaUntil = time.Time{}
		if b.onChange != nil {
			go b.onChange(b.next.Name(), b.cb.State().String())
		}
		return time.Time{}
	}
	return b.quotaUntil
}

// reopens is when an open breaker lets a trial call through.
func (b *Breaker) reopens() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openedAt.Add(b.cfg.CoolDown)
}

// State is the breaker's state as ops see it.
type State struct {
	Provider  string    `json:"provider"`
	State     string    `json:"state"` // closed, half-open, open
	OpenUntil time.Time `json:"open_until,omitzero"`
	Requests  uint32    `json:"requests"` // in the current window
	Failures  uint32    `json:"failures"`
	P50MS     float64   `json:"latency_p50_ms"` // over the latest 256 calls
	P95MS     float64   `json:"latency_p95_ms"`
}

// State reports the breaker's state; Available is false while calls are
// refused.
func (b *Breaker) State() State {
	c := b.cb.Counts()
	s := State{Provider: b.next.Name(), State: b.cb.State().String(), Requests: c.Requests, Failures: c.TotalFailures}
	b.mu.Lock()
	lat := append([]time.Duration(nil), b.lat[:min(b.nlat, len(b.lat))]...)
	b.mu.Unlock()
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50MS = float64(lat[len(lat)/2].Microseconds()) / 1000
		s.P95MS = float64(lat[len(lat)*95/100].Microseconds()) / 1000
	}
	if q := b.quota(); !q.IsZero() {
		s.State, s.OpenUntil = "open", q
	} else if s.State == "open" {
		s.OpenUntil = b.reopens()
	}
	return s
}

// Available reports whether a call would be let through now, and if not,
// when it may be.
func (b *Breaker) Available() (bool, time.Time) {
	if q := b.quota(); !q.IsZero() {
		return false, q
	}
	if b.cb.State() == gobreaker.StateOpen {
		return false, b.reopens()
	}
	return true, time.Time{}
}
