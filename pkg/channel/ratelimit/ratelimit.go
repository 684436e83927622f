// Package ratelimit holds every replica to one send rate per provider (a
// sender's messages per second at Twilio, WeChat's calls per minute): the
// count lives in Redis, per fixed window, shared by all replicas, so ten
// replicas do not send ten times the allowed rate. A replica takes a few
// sends at a time so that most sends cost no Redis call.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/channel"
)

// take grants up to ARGV[2] sends from the window's budget.
//
// KEYS[1]  the window's counter
// ARGV[1]  sends allowed per window
// ARGV[2]  sends wanted
// ARGV[3]  window length, ms (the counter lives two windows)
//
// Returns the sends granted (0 when the window is spent).
var take = redis.NewScript(`
local want = tonumber(ARGV[2])
local n = redis.call('INCRBY', KEYS[1], want)
if n == want then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2) end
local over = n - tonumber(ARGV[1])
if over <= 0 then return want end
local granted = want - over
if granted < 0 then granted = 0 end
redis.call('DECRBY', KEYS[1], want - granted)
return granted
`)

// Limiter is one provider's shared rate.
type Limiter struct {
	rdb    redis.UniversalClient
	key    string
	limit  int
	window time.Duration
	batch  int
	now    func() time.Time

	mu     sync.Mutex
	tokens int
	at     int64 // window index the tokens belong to
}

// New returns a limiter of limit sends per window for provider, keyed under
// prefix. A limit of 0 means no limit: New returns nil, and a nil *Limiter
// lets everything through.
func New(rdb redis.UniversalClient, prefix, provider string, limit int, window time.Duration) *Limiter {
	if limit <= 0 {
		return nil
	}
	if window <= 0 {
		window = time.Second
	}
	return &Limiter{rdb: rdb, key: prefix + "ratelimit:" + provider + ":", limit: limit, window: window,
		batch: max(1, limit/20), now: time.Now}
}

// Wait blocks until a send is allowed, or ctx ends.
func (l *Limiter) Wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	for {
		now := l.now()
		w := now.UnixMilli() / l.window.Milliseconds()
		l.mu.Lock()
		if l.at != w {
			l.at, l.tokens = w, 0 // what was left belongs to a past window
		}
		if l.tokens > 0 {
			l.tokens--
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		n, err := take.Run(ctx, l.rdb, []string{l.key + strconv.FormatInt(w, 10)}, l.limit, l.batch, l.window.Milliseconds()).Int()
		if err != nil {
			return fmt.Errorf("rate limit: %w", err)
		}
		if n > 0 {
			l.mu.Lock()
			if l.at == w {
				l.tokens += n - 1
			}
			l.mu.Unlock()
			return nil
		}
		next := time.UnixMilli((w + 1) * l.window.Milliseconds())
		t := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Sender is a provider adapter.
type Sender interface {
	Send(ctx context.Context, m channel.Message) (channel.Receipt, error)
	Idempotent() bool
	Name() string
}

// Limited is a Sender held to a Limiter.
type Limited struct {
	Sender
	l *Limiter
}

// Wrap holds next to l (nil: no limit).
func Wrap(next Sender, l *Limiter) Sender {
	if l == nil {
		return next
	}
	return &Limited{Sender: next, l: l}
}

// Send waits for the rate, then sends. Waiting past the deadline fails
// before anything reached the provider: retryable.
func (s *Limited) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	if err := s.l.Wait(ctx); err != nil {
		return channel.Receipt{}, &channel.Error{Kind: channel.Retryable, Code: "rate_limited", Err: err}
	}
	return s.Sender.Send(ctx, m)
}

// Available is the wrapped sender's (a breaker's), or always.
func (s *Limited) Available() (bool, time.Time) {
	if a, ok := s.Sender.(interface{ Available() (bool, time.Time) }); ok {
		return a.Available()
	}
	return true, time.Time{}
}

// IdempotencyWindow is the wrapped sender's.
func (s *Limited) IdempotencyWindow() time.Duration {
	if x, ok := s.Sender.(interface{ IdempotencyWindow() time.Duration }); ok {
		return x.IdempotencyWindow()
	}
	return 0
}

// Reserve waits for the rate without sending: a caller that reserves
// before it takes a slot for the call (the worker does) never holds a slot
// while it waits. The send that follows is SendReserved.
func (s *Limited) Reserve(ctx context.Context) error {
	if err := s.l.Wait(ctx); err != nil {
		return &channel.Error{Kind: channel.Retryable, Code: "rate_limited", Err: err}
	}
	return nil
}

// SendReserved sends a message whose rate was reserved.
func (s *Limited) SendReserved(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	return s.Sender.Send(ctx, m)
}

// Rate is the limit: n sends per window.
func (s *Limited) Rate() (int, time.Duration) { return s.l.limit, s.l.window }
