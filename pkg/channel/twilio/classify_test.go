package twilio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
)

// restErr is a Twilio error reply as twilio-go returns it; its message
// names the recipient, as Twilio's do.
func restErr(status, code int) error {
	return &client.TwilioRestError{Status: status, Code: code,
		Message:  "The 'To' number " + debtor + " is not a valid phone number.",
		MoreInfo: fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code)}
}

func TestClassify(t *testing.T) {
	now := fixedNow
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connect: connection refused"}}
	noHost := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "api.twilio.com", IsNotFound: true}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	cases := []struct {
		name   string
		o      outcome
		ok     bool
		kind   channel.Kind
		code   string
		optOut bool
		after  time.Duration
	}{
		{name: "created", o: outcome{status: 201, sent: sent, sid: "SM0123"}, ok: true},
		{name: "21610 unsubscribed", o: outcome{err: restErr(400, 21610), status: 400, sent: sent}, kind: channel.Permanent, code: "21610", optOut: true},
		{name: "21211 invalid To", o: outcome{err: restErr(400, 21211), status: 400, sent: sent}, kind: channel.Permanent, code: "21211"},
		{name: "21614 not a mobile number", o: outcome{err: restErr(400, 21614), status: 400, sent: sent}, kind: channel.Permanent, code: "21614"},
		{name: "21612 not reachable by SMS", o: outcome{err: restErr(400, 21612), status: 400, sent: sent}, kind: channel.Permanent, code: "21612"},
		{name: "21408 region not permitted", o: outcome{err: restErr(400, 21408), status: 400, sent: sent}, kind: channel.Permanent, code: "21408"},
		{name: "21217 invalid number for calls", o: outcome{err: restErr(400, 21217), status: 400, sent: sent}, kind: channel.Permanent, code: "21217"},
		{name: "13224 dial invalid number", o: outcome{err: restErr(400, 13224), status: 400, sent: sent}, kind: channel.Permanent, code: "13224"},
		{name: "13223 dial invalid format", o: outcome{err: restErr(400, 13223), status: 400, sent: sent}, kind: channel.Permanent, code: "13223"},
		{name: "other 4xx: 21617 body too long", o: outcome{err: restErr(400, 21617), status: 400, sent: sent}, kind: channel.Permanent, code: "21617"},
		{name: "other 4xx: 404", o: outcome{err: restErr(404, 20404), status: 404, sent: sent}, kind: channel.Permanent, code: "20404"},
		{name: "429 with Retry-After seconds", o: outcome{err: restErr(429, 20429), status: 429, retryAfter: "2", sent: sent}, kind: channel.Retryable, code: "20429", after: 2 * time.Second},
		{name: "429 with Retry-After date", o: outcome{err: restErr(429, 20429), status: 429, retryAfter: now.Add(90 * time.Second).Format(http.TimeFormat), sent: sent}, kind: channel.Retryable, code: "20429", after: 90 * time.Second},
		{name: "20429 without Retry-After", o: outcome{err: restErr(429, 20429), status: 429, sent: sent}, kind: channel.Retryable, code: "20429"},
		{name: "429 without a Twilio code", o: outcome{err: errors.New("decode"), status: 429, retryAfter: "3", sent: sent}, kind: channel.Retryable, code: "http_429", after: 3 * time.Second},
		{name: "500", o: outcome{err: restErr(500, 20500), status: 500, sent: sent}, kind: channel.Retryable, code: "20500"},
		{name: "503 with Retry-After", o: outcome{err: restErr(503, 20503), status: 503, retryAfter: "5", sent: sent}, kind: channel.Retryable, code: "20503", after: 5 * time.Second},
		{name: "502 page from a proxy", o: outcome{err: errors.New("error decoding the response for an HTTP error code: 502"), status: 502, sent: sent}, kind: channel.Retryable, code: "http_502"},
		{name: "401 our credentials", o: outcome{err: restErr(401, 20003), status: 401, sent: sent}, kind: channel.Retryable, code: "20003"},
		{name: "403 our account", o: outcome{err: restErr(403, 20403), status: 403, sent: sent}, kind: channel.Retryable, code: "20403"},
		{name: "v1.0 error shape", o: outcome{err: &client.RestErrorV1{Code: 21610, HttpStatusCode: 400, Message: debtor}, status: 400, sent: sent}, kind: channel.Permanent, code: "21610", optOut: true},
		{name: "connection refused", o: outcome{err: refused, sent: unsent}, kind: channel.Retryable, code: "connect"},
		{name: "no such host", o: outcome{err: noHost, sent: unsent}, kind: channel.Retryable, code: "connect"},
		{name: "canceled before writing", o: outcome{err: context.Canceled, sent: unsent}, kind: channel.Retryable, code: "canceled"},
		{name: "deadline before writing", o: outcome{err: context.DeadlineExceeded, sent: unsent}, kind: channel.Retryable, code: "timeout"},
		{name: "deadline after writing", o: outcome{err: context.DeadlineExceeded, sent: sent}, kind: channel.Unknown, code: "timeout"},
		{name: "canceled after writing", o: outcome{err: context.Canceled, sent: sent}, kind: channel.Unknown, code: "canceled"},
		{name: "reset after writing", o: outcome{err: reset, sent: sent}, kind: channel.Unknown, code: "transport"},
		{name: "EOF after writing", o: outcome{err: io.ErrUnexpectedEOF, sent: sent}, kind: channel.Unknown, code: "transport"},
		{name: "deadline while writing", o: outcome{err: context.DeadlineExceeded, sent: maybeSent}, kind: channel.Unknown, code: "timeout"},
		{name: "201 whose body is not JSON", o: outcome{err: errors.New("invalid character"), status: 201, sent: sent}, kind: channel.Unknown, code: "bad_reply"},
		{name: "201 without a SID", o: outcome{status: 201, sent: sent}, kind: channel.Unknown, code: "bad_reply"},
		{name: "302 redirect", o: outcome{err: errors.New("EOF"), status: 302, sent: sent}, kind: channel.Unknown, code: "bad_reply"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := classify(tc.o, now)
			if tc.ok {
				if e != nil {
					t.Fatalf("classify = %v, want success", e)
				}
				return
			}
			if e == nil {
				t.Fatal("classify = nil, want an error")
			}
			if e.Kind != tc.kind || e.Code != tc.code || e.OptOut != tc.optOut || e.RetryAfter != tc.after {
				t.Errorf("classify = {kind %v, code %q, optOut %v, after %v}, want {%v, %q, %v, %v}",
					e.Kind, e.Code, e.OptOut, e.RetryAfter, tc.kind, tc.code, tc.optOut, tc.after)
			}
			if strings.Contains(e.Error(), "13800138000") {
				t.Errorf("error %q shows the number", e)
			}
		})
	}
}

// closedURL is the URL of a port nobody listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// stuckDialer never connects: each dial waits for its context to end.
func stuckDialer() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}}
}

func TestClassifyAgainstServer(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name    string
		setup   func(*twiliotest.Server)
		cfg     func(*Config)
		ctx     func() (context.Context, context.CancelFunc)
		voice   bool
		to      string
		kind    channel.Kind
		code    string
		optOut  bool
		after   time.Duration
		created int // resources the server made
		reqs    int // requests the server received
	}{
		{name: "500", setup: func(s *twiliotest.Server) { s.Fail(1, 500, 0) }, kind: channel.Retryable, code: "20500", reqs: 1},
		{name: "503", setup: func(s *twiliotest.Server) { s.Fail(1, 503, 0) }, kind: channel.Retryable, code: "20503", reqs: 1},
		{name: "502 page from a proxy", setup: func(s *twiliotest.Server) {
			s.FailWith(1, twiliotest.Failure{Status: 502, Body: "<html>Bad Gateway</html>"})
		}, kind: channel.Retryable, code: "http_502", reqs: 1},
		{name: "429 with Retry-After: 2", setup: func(s *twiliotest.Server) {
			s.FailWith(1, twiliotest.Failure{Status: 429, RetryAfter: "2"})
		}, kind: channel.Retryable, code: "20429", after: 2 * time.Second, reqs: 1},
		{name: "20429 without Retry-After", setup: func(s *twiliotest.Server) { s.Fail(1, 429, 20429) }, kind: channel.Retryable, code: "20429", reqs: 1},
		{name: "21610 unsubscribed recipient", setup: func(s *twiliotest.Server) { s.FailNumber(debtor, 400, 21610) },
			kind: channel.Permanent, code: "21610", optOut: true, reqs: 1},
		{name: "21211 programmed for the number", setup: func(s *twiliotest.Server) { s.FailNumber(debtor, 400, 21211) },
			kind: channel.Permanent, code: "21211", reqs: 1},
		{name: "21211 invalid number", to: "013800138000", kind: channel.Permanent, code: "21211", reqs: 1},
		{name: "call to an invalid number", voice: true,
			setup: func(s *twiliotest.Server) { s.FailNumber(debtor, 400, 13224) }, kind: channel.Permanent, code: "13224", reqs: 1},
		{name: "401 wrong auth token", cfg: func(c *Config) { c.AuthToken = "wrongtoken" }, kind: channel.Retryable, code: "20003", reqs: 1},
		{name: "answer after the client timeout", setup: func(s *twiliotest.Server) { s.Delay(2 * time.Second) },
			cfg: func(c *Config) { c.Timeout = 100 * time.Millisecond }, kind: channel.Unknown, code: "timeout", created: 1, reqs: 1},
		{name: "caller's deadline after sending", setup: func(s *twiliotest.Server) { s.Delay(2 * time.Second) },
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			}, kind: channel.Unknown, code: "timeout", created: 1, reqs: 1},
		{name: "connection dropped after the request was read", setup: func(s *twiliotest.Server) {
			s.FailWith(1, twiliotest.Failure{Drop: true})
		}, kind: channel.Unknown, code: "transport", created: 1, reqs: 1},
		{name: "connection refused", cfg: func(c *Config) { c.BaseURL = closedURL(t) }, kind: channel.Retryable, code: "connect"},
		{name: "deadline while connecting", cfg: func(c *Config) { c.Timeout, c.HTTPClient = 100*time.Millisecond, stuckDialer() },
			kind: channel.Retryable, code: "timeout"},
		{name: "context canceled before sending", ctx: func() (context.Context, context.CancelFunc) { return canceled, func() {} },
			kind: channel.Retryable, code: "canceled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			if tc.setup != nil {
				tc.setup(srv)
			}
			cfg := config(srv)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			to := debtor
			if tc.to != "" {
				to = tc.to
			}
			m := channel.Message{To: to, Locale: "zh-CN", Text: "张三您好，您的贷款已逾期。"}
			var s sender = newSMS(t, cfg)
			if tc.voice {
				s = newVoice(t, cfg)
			}
			start := time.Now()
			_, err := s.Send(ctx, m)
			if d := time.Since(start); d > time.Second {
				t.Errorf("Send took %v", d)
			}
			var e *channel.Error
			if !errors.As(err, &e) {
				t.Fatalf("Send error = %v, want a *channel.Error", err)
			}
			if e.Kind != tc.kind || e.Code != tc.code || e.OptOut != tc.optOut || e.RetryAfter != tc.after {
				t.Errorf("error = {kind %v, code %q, optOut %v, after %v}, want {%v, %q, %v, %v} (%v)",
					e.Kind, e.Code, e.OptOut, e.RetryAfter, tc.kind, tc.code, tc.optOut, tc.after, err)
			}
			for _, pii := range []string{to, strings.TrimPrefix(to, "+"), m.Text, testToken} {
				if strings.Contains(err.Error(), pii) {
					t.Errorf("error %q shows %q", err, pii)
				}
			}
			if n := len(srv.Created()); n != tc.created {
				t.Errorf("server created %d, want %d", n, tc.created)
			}
			if n := srv.Count(); n != tc.reqs {
				t.Errorf("server got %d requests, want %d", n, tc.reqs)
			}
		})
	}
}
