// Package channel owns what every provider adapter shares: the message handed
// to a provider, the receipt it gives back, and the one error vocabulary that
// tells the worker what a failure means (permanent, retryable, unknown
// outcome). Adapters live in the sub-packages, one per provider.
package channel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Message is one rendered contact, ready for a provider.
type Message struct {
	IntentID  string
	DebtorID  string
	Channel   intent.Channel
	To        string // the address: personal data, never logged
	Locale    string
	Template  string
	Subject   string  // e-mail
	Text      string  // body for SMS and voice; text part of e-mail
	HTML      string  // HTML part of e-mail
	Title     string  // WeChat
	Fields    []Field // WeChat template keywords
	OptOutURL string  // the debtor's opt-out link, where the template carries one
}

// Field is a key/value line of a structured message (WeChat template data).
type Field struct{ Key, Value string }

// Receipt is what a provider gave back for an accepted message.
type Receipt struct {
	Provider   string    // e.g. "sandbox", "twilio"
	ProviderID string    // the provider's message or call id
	At         time.Time // when the provider accepted it
}

// Kind says what a failure means for the intent.
type Kind int

// The error kinds.
const (
	// Permanent: this address will never work on this channel (invalid
	// number, unsubscribed, not a follower). Not the provider's fault.
	Permanent Kind = iota + 1
	// Retryable: the provider did not take the message; trying later may
	// work (rate limited, 5xx before acceptance, connection refused).
	Retryable
	// Unknown: the request may have reached the provider (a timeout after
	// sending). Never resent blindly.
	Unknown
)

func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Retryable:
		return "retryable"
	case Unknown:
		return "unknown_outcome"
	}
	return "kind(" + fmt.Sprint(int(k)) + ")"
}

// Error is a classified send failure.
type Error struct {
	Kind       Kind
	Code       string        // the provider's error code, if any
	RetryAfter time.Duration // a provider's hint for Retryable, if any
	// OptOut: the provider says the recipient opted out of this channel
	// (Twilio 21610, WeChat 43101). The dispatcher records the opt-out.
	OptOut bool
	// Until: the provider refuses every message until then (a daily quota
	// spent, WeChat 45009): the channel's breaker stays open until then.
	Until time.Time
	Err   error
}

func (e *Error) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (code %s): %v", e.Kind, e.Code, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf classifies err. An error no adapter classified is treated as an
// unknown outcome: the safe reading when nobody can say whether it was sent.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Unknown
}

// Errorf makes a classified error.
func Errorf(k Kind, code, format string, args ...any) error {
	return &Error{Kind: k, Code: code, Err: fmt.Errorf(format, args...)}
}

// TransportCode names a provider call's failure that got no reply:
// "canceled", "timeout", "connect" (the connection was never made, so
// nothing was sent) or "transport".
func TransportCode(err error) string {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &op) && op.Op == "dial":
		return "connect"
	}
	return "transport"
}

// RetryAfter reads an HTTP Retry-After header (seconds or an HTTP date);
// 0 when it is absent, malformed or in the past.
func RetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
