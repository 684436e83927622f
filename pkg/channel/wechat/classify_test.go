package wechat

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestClassify(t *testing.T) {
	// 23:30 on 23 Nov in Shanghai is 15:30 UTC.
	now := time.Date(2026, 11, 23, 15, 30, 0, 0, time.UTC)
	midnight := time.Date(2026, 11, 24, 0, 0, 0, 0, shanghai)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	cases := []struct {
		name   string
		o      outcome
		ok     bool
		kind   channel.Kind
		code   string
		optOut bool
		until  time.Time
		after  time.Duration
	}{
		{name: "accepted", o: outcome{status: 200, msgID: "1"}, ok: true},
		{name: "not a follower", o: outcome{status: 200, code: 43004, msg: "require subscribe"}, kind: channel.Permanent, code: "43004"},
		{name: "user refused messages", o: outcome{status: 200, code: 43101, msg: "user refuse to accept the msg"}, kind: channel.Permanent, code: "43101", optOut: true},
		{name: "invalid openid", o: outcome{status: 200, code: 40003}, kind: channel.Permanent, code: "40003"},
		{name: "invalid template id", o: outcome{status: 200, code: 40037}, kind: channel.Permanent, code: "40037"},
		{name: "data does not fit the template", o: outcome{status: 200, code: 47003}, kind: channel.Permanent, code: "47003"},
		{name: "client_msg_id too long", o: outcome{status: 200, code: 45067}, kind: channel.Permanent, code: "45067"},
		{name: "daily quota spent", o: outcome{status: 200, code: 45009}, kind: channel.Retryable, code: "45009", until: midnight},
		{name: "minute quota", o: outcome{status: 200, code: 45011}, kind: channel.Retryable, code: "45011"},
		{name: "response limit", o: outcome{status: 200, code: 45047}, kind: channel.Retryable, code: "45047"},
		{name: "response time limit", o: outcome{status: 200, code: 45015}, kind: channel.Retryable, code: "45015"},
		{name: "system busy", o: outcome{status: 200, code: -1, msg: "system error"}, kind: channel.Retryable, code: "-1"},
		{name: "token invalid after the retry", o: outcome{status: 200, code: 40001}, kind: channel.Retryable, code: "40001"},
		{name: "token bad after the retry", o: outcome{status: 200, code: 40014}, kind: channel.Retryable, code: "40014"},
		{name: "token expired after the retry", o: outcome{status: 200, code: 42001}, kind: channel.Retryable, code: "42001"},
		{name: "unknown errcode", o: outcome{status: 200, code: 99999}, kind: channel.Retryable, code: "99999"},
		{name: "HTTP 500", o: outcome{status: 500}, kind: channel.Retryable, code: "http_500"},
		{name: "HTTP 503", o: outcome{status: 503}, kind: channel.Retryable, code: "http_503"},
		{name: "HTTP 429 with Retry-After", o: outcome{status: 429, retryAfter: "7"}, kind: channel.Retryable, code: "http_429", after: 7 * time.Second},
		{name: "HTTP 302", o: outcome{status: 302}, kind: channel.Retryable, code: "http_302"},
		{name: "200 that is not WeChat's", o: outcome{status: 200, badBody: true}, kind: channel.Unknown, code: "bad_reply"},
		{name: "refused before writing", o: outcome{err: refused}, kind: channel.Retryable, code: "connect"},
		{name: "deadline before writing", o: outcome{err: context.DeadlineExceeded}, kind: channel.Retryable, code: "timeout"},
		{name: "canceled before writing", o: outcome{err: context.Canceled}, kind: channel.Retryable, code: "canceled"},
		{name: "deadline after writing", o: outcome{err: context.DeadlineExceeded, wrote: true}, kind: channel.Unknown, code: "timeout"},
		{name: "net timeout after writing", o: outcome{err: timeoutErr{}, wrote: true}, kind: channel.Unknown, code: "timeout"},
		{name: "connection cut after writing", o: outcome{err: io.ErrUnexpectedEOF, wrote: true}, kind: channel.Unknown, code: "transport"},
		{name: "body cut after a 200", o: outcome{status: 200, err: io.ErrUnexpectedEOF, wrote: true}, kind: channel.Unknown, code: "transport"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := classify(tc.o, now)
			if tc.ok {
				if e != nil {
					t.Fatalf("got %v, want success", e)
				}
				return
			}
			if e == nil {
				t.Fatal("got success, want a failure")
			}
			if e.Kind != tc.kind || e.Code != tc.code || e.OptOut != tc.optOut {
				t.Errorf("got kind %s code %q optout %v, want %s %q %v", e.Kind, e.Code, e.OptOut, tc.kind, tc.code, tc.optOut)
			}
			if !e.Until.Equal(tc.until) {
				t.Errorf("until %v, want %v", e.Until, tc.until)
			}
			if e.RetryAfter != tc.after {
				t.Errorf("retry after %v, want %v", e.RetryAfter, tc.after)
			}
			if errors.Is(tc.o.err, context.Canceled) && !errors.Is(e, context.Canceled) {
				t.Error("a cancellation must stay visible to errors.Is (the breaker ignores it)")
			}
		})
	}
}

func TestNextMidnight(t *testing.T) {
	cases := []struct {
		name string
		now  time.Time
		want time.Time
	}{
		{"evening in Shanghai", time.Date(2026, 11, 23, 20, 0, 0, 0, shanghai), time.Date(2026, 11, 24, 0, 0, 0, 0, shanghai)},
		{"just after midnight", time.Date(2026, 11, 24, 0, 0, 1, 0, shanghai), time.Date(2026, 11, 25, 0, 0, 0, 0, shanghai)},
		{"UTC afternoon is already tomorrow there", time.Date(2026, 11, 23, 16, 30, 0, 0, time.UTC), time.Date(2026, 11, 25, 0, 0, 0, 0, shanghai)},
		{"end of year", time.Date(2026, 12, 31, 23, 59, 0, 0, shanghai), time.Date(2027, 1, 1, 0, 0, 0, 0, shanghai)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextMidnight(tc.now); !got.Equal(tc.want) {
				t.Errorf("nextMidnight(%v) = %v, want %v", tc.now, got, tc.want)
			}
		})
	}
}
