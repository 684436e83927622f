package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func reply(code int, msg string) error { return &textproto.Error{Code: code, Msg: msg} }

func TestClassify(t *testing.T) {
	opErr := func(err error) error { return &net.OpError{Op: "read", Net: "tcp", Err: err} }
	tests := []struct {
		name     string
		st       stage
		err      error
		ctxErr   error
		wantKind channel.Kind
		wantCode string
	}{
		// Replies before the recipient: our account or the relay.
		{"421 greeting", stageGreeting, reply(421, "4.3.2 shutting down"), nil, channel.Retryable, "421 4.3.2"},
		{"554 greeting", stageGreeting, reply(554, "no SMTP service here"), nil, channel.Retryable, "554"},
		{"454 STARTTLS", stageTLS, reply(454, "4.7.0 TLS not available"), nil, channel.Retryable, "454 4.7.0"},
		{"535 AUTH", stageAuth, reply(535, "5.7.8 Authentication credentials invalid"), nil, channel.Retryable, "535 5.7.8"},
		{"550 MAIL FROM", stageMail, reply(550, "5.1.0 sender rejected"), nil, channel.Retryable, "550 5.1.0"},
		{"451 MAIL FROM", stageMail, reply(451, "4.3.0 try later"), nil, channel.Retryable, "451 4.3.0"},
		// The recipient.
		{"550 RCPT", stageRcpt, reply(550, "5.1.1 no such user"), nil, channel.Permanent, "550 5.1.1"},
		{"550 RCPT without enhanced code", stageRcpt, reply(550, "no such user"), nil, channel.Permanent, "550"},
		{"552 RCPT mailbox full", stageRcpt, reply(552, "5.2.2 mailbox full"), nil, channel.Permanent, "552 5.2.2"},
		{"451 RCPT", stageRcpt, reply(451, "4.7.1 greylisted"), nil, channel.Retryable, "451 4.7.1"},
		{"554 5.7.1 RCPT relaying denied", stageRcpt, reply(554, "5.7.1 Relay access denied"), nil, channel.Retryable, "554 5.7.1"},
		{"554 DATA command", stageData, reply(554, "5.5.1 no valid recipients"), nil, channel.Permanent, "554 5.5.1"},
		{"452 DATA command", stageData, reply(452, "4.3.1 insufficient storage"), nil, channel.Retryable, "452 4.3.1"},
		// The final reply.
		{"554 final reply", stageReply, reply(554, "5.6.0 message refused"), nil, channel.Permanent, "554 5.6.0"},
		{"550 5.7.26 final reply (DMARC)", stageReply, reply(550, "5.7.26 unauthenticated mail"), nil, channel.Retryable, "550 5.7.26"},
		{"451 final reply", stageReply, reply(451, "4.3.0 queue full"), nil, channel.Retryable, "451 4.3.0"},
		{"421 final reply", stageReply, reply(421, "4.4.2 closing"), nil, channel.Retryable, "421 4.4.2"},
		// No reply.
		{"connection refused", stageDial, opErr(syscall.ECONNREFUSED), nil, channel.Retryable, "dial"},
		{"dial timeout", stageDial, opErr(timeoutErr{}), nil, channel.Retryable, "timeout"},
		{"greeting EOF", stageGreeting, io.EOF, nil, channel.Retryable, "connection_lost"},
		{"untrusted certificate", stageTLS, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, nil, channel.Retryable, "tls"},
		{"no STARTTLS", stageTLS, errNoStartTLS, nil, channel.Retryable, "starttls_unavailable"},
		{"no AUTH mechanism", stageAuth, errNoAuthMech, nil, channel.Retryable, "auth_unsupported"},
		{"reset while writing the body", stageBody, opErr(syscall.ECONNRESET), nil, channel.Retryable, "connection_lost"},
		{"deadline while writing the body", stageBody, opErr(net.ErrClosed), context.DeadlineExceeded, channel.Retryable, "timeout"},
		{"deadline while waiting for the reply", stageReply, opErr(net.ErrClosed), context.DeadlineExceeded, channel.Unknown, "timeout"},
		{"read timeout after the dot", stageReply, opErr(timeoutErr{}), nil, channel.Unknown, "timeout"},
		{"canceled after the dot", stageReply, opErr(net.ErrClosed), context.Canceled, channel.Unknown, "canceled"},
		{"canceled before the dot", stageRcpt, opErr(net.ErrClosed), context.Canceled, channel.Retryable, "canceled"},
		{"EOF after the dot", stageReply, io.EOF, nil, channel.Unknown, "connection_lost"},
		{"odd reply after the dot", stageReply, reply(354, "go on"), nil, channel.Unknown, "protocol"},
		{"classified already", stageRcpt, &channel.Error{Kind: channel.Permanent, Code: "x", Err: errors.New("x")}, nil, channel.Permanent, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := classify(tt.st, tt.err, tt.ctxErr)
			if e.Kind != tt.wantKind || e.Code != tt.wantCode {
				t.Errorf("classify(%s, %v, %v) = %s %q, want %s %q", tt.st, tt.err, tt.ctxErr, e.Kind, e.Code, tt.wantKind, tt.wantCode)
			}
			if e.Err == nil {
				t.Error("no underlying error")
			}
		})
	}
}

func TestScrub(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"address in brackets", "<zhang.san@example.cn>: Recipient address rejected", "<z***@example.cn>: Recipient address rejected"},
		{"bare address", "user zhang@example.cn unknown", "user z***@example.cn unknown"},
		{"multi-line", "first\nsecond  line", "first second line"},
		{"long", strings.Repeat("错", 100), strings.Repeat("错", 66) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scrub(tt.in); got != tt.want {
				t.Errorf("scrub(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// closedAddr is an address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestSendFailures provokes each failure against a real server and checks
// the kind the worker sees, and what the server got.
func TestSendFailures(t *testing.T) {
	tests := []struct {
		name     string
		opts     []smtptest.Option
		fault    func(*smtptest.Server)
		edit     func(*Config, *smtptest.Server)
		ctx      func() (context.Context, context.CancelFunc)
		wantKind channel.Kind
		wantCode string
		wantMsgs int  // messages the server holds afterwards
		noMail   bool // the server must not have seen MAIL FROM
	}{
		{
			name:     "550 on RCPT",
			fault:    func(s *smtptest.Server) { s.RejectRcpt(testTo, 550, "5.1.1 <"+testTo+">: Recipient address rejected") },
			wantKind: channel.Permanent, wantCode: "550 5.1.1",
		},
		{
			name:     "451 on RCPT",
			fault:    func(s *smtptest.Server) { s.RejectRcpt(testTo, 451, "4.7.1 greylisted, try again") },
			wantKind: channel.Retryable, wantCode: "451 4.7.1",
		},
		{
			name:     "554 5.7.1 on RCPT: relaying denied",
			fault:    func(s *smtptest.Server) { s.RejectRcpt(testTo, 554, "5.7.1 Relay access denied") },
			wantKind: channel.Retryable, wantCode: "554 5.7.1",
		},
		{
			name:     "550 on MAIL FROM",
			fault:    func(s *smtptest.Server) { s.RejectMail(550, "5.1.8 sender domain rejected") },
			wantKind: channel.Retryable, wantCode: "550 5.1.8",
		},
		{
			name:     "554 on DATA",
			fault:    func(s *smtptest.Server) { s.FailData(554, 1) },
			wantKind: channel.Permanent, wantCode: "554 5.0.0",
		},
		{
			name:     "451 on DATA",
			fault:    func(s *smtptest.Server) { s.FailData(451, 1) },
			wantKind: channel.Retryable, wantCode: "451 4.0.0",
		},
		{
			name:     "wrong password: 535 on AUTH",
			edit:     func(c *Config, _ *smtptest.Server) { c.Password = "wrong" },
			wantKind: channel.Retryable, wantCode: "535 5.7.8", noMail: true,
		},
		{
			name:     "no credentials where AUTH is required: 530 on MAIL FROM",
			edit:     func(c *Config, _ *smtptest.Server) { c.Username, c.Password = "", "" },
			wantKind: channel.Retryable, wantCode: "530 5.7.0",
		},
		{
			name:     "server hangs after DATA past the timeout",
			fault:    func(s *smtptest.Server) { s.HangAfterData(10 * time.Second) },
			edit:     func(c *Config, _ *smtptest.Server) { c.Timeout = 300 * time.Millisecond },
			wantKind: channel.Unknown, wantCode: "timeout", wantMsgs: 1,
		},
		{
			name:  "caller cancels while the server holds the reply",
			fault: func(s *smtptest.Server) { s.HangAfterData(10 * time.Second) },
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(300*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantKind: channel.Unknown, wantCode: "canceled", wantMsgs: 1,
		},
		{
			name:     "caller's deadline already spent",
			ctx:      func() (context.Context, context.CancelFunc) { return context.WithTimeout(context.Background(), 0) },
			wantKind: channel.Retryable, wantCode: "timeout", noMail: true,
		},
		{
			name:     "credentials, and the server offers no AUTH",
			opts:     []smtptest.Option{},
			wantKind: channel.Retryable, wantCode: "auth_unsupported", noMail: true,
		},
		{
			name:     "closed port",
			edit:     func(c *Config, _ *smtptest.Server) { c.Addr = closedAddr(t) },
			wantKind: channel.Retryable, wantCode: "dial", noMail: true,
		},
		{
			name:     "starttls against a server without STARTTLS",
			opts:     []smtptest.Option{smtptest.WithoutSTARTTLS(), smtptest.WithAuth("dispatcher", "secret")},
			wantKind: channel.Retryable, wantCode: "starttls_unavailable", noMail: true,
		},
		{
			name:     "untrusted certificate",
			edit:     func(c *Config, _ *smtptest.Server) { c.TLSConfig = nil },
			wantKind: channel.Retryable, wantCode: "tls", noMail: true,
		},
		{
			name:     "implicit tls against a STARTTLS port",
			edit:     func(c *Config, _ *smtptest.Server) { c.TLS = TLSImplicit; c.Timeout = 500 * time.Millisecond },
			wantKind: channel.Retryable, wantCode: "tls", noMail: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts == nil {
				opts = []smtptest.Option{smtptest.WithAuth("dispatcher", "secret")}
			}
			srv := smtptest.NewServer(t, opts...)
			if tt.fault != nil {
				tt.fault(srv)
			}
			mailer := newMailer(t, srv, func(c *Config) {
				c.Timeout = 2 * time.Second
				if tt.edit != nil {
					tt.edit(c, srv)
				}
			})
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			start := time.Now()
			r, err := mailer.Send(ctx, testMessage())
			if took := time.Since(start); took > 1500*time.Millisecond {
				t.Errorf("Send took %v", took)
			}
			if err == nil {
				t.Fatalf("Send succeeded (%+v), want a %s failure", r, tt.wantKind)
			}
			var ce *channel.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v is not a *channel.Error", err, err)
			}
			if ce.Kind != tt.wantKind || (tt.wantCode != "" && ce.Code != tt.wantCode) {
				t.Errorf("got %s %q (%v), want %s %q", ce.Kind, ce.Code, err, tt.wantKind, tt.wantCode)
			}
			if strings.Contains(err.Error(), testTo) {
				t.Errorf("the error shows the address: %v", err)
			}
			if got := len(srv.Messages()); got != tt.wantMsgs {
				t.Errorf("server holds %d messages, want %d", got, tt.wantMsgs)
			}
			if st := srv.Stats(); tt.noMail && (st.Mails != 0 || st.PlainMails != 0) {
				t.Errorf("server saw MAIL FROM (%+v); nothing should have been sent", st)
			}
		})
	}
}

func TestSendInvalidMessage(t *testing.T) {
	srv := smtptest.NewServer(t)
	mailer := newMailer(t, srv, func(c *Config) { c.Username, c.Password = "", "" })
	tests := []struct {
		name     string
		edit     func(*channel.Message)
		wantCode string
	}{
		{"no @", func(m *channel.Message) { m.To = "zhang.example.cn" }, "invalid_address"},
		{"display name", func(m *channel.Message) { m.To = "张三 <" + testTo + ">" }, "invalid_address"},
		{"header injection", func(m *channel.Message) { m.To = testTo + "\r\nBcc: x@evil.example" }, "invalid_address"},
		{"non-ASCII", func(m *channel.Message) { m.To = "张三@example.cn" }, "invalid_address"},
		{"two addresses", func(m *channel.Message) { m.To = testTo + ", x@evil.example" }, "invalid_address"},
		{"empty", func(m *channel.Message) { m.To = "" }, "invalid_address"},
		{"no body", func(m *channel.Message) { m.Text, m.HTML = "", "" }, "bad_message"},
		{"no intent id", func(m *channel.Message) { m.IntentID = "" }, "bad_message"},
		{"intent id with a line break", func(m *channel.Message) { m.IntentID = "a\r\nBcc: x" }, "bad_message"},
		{"opt-out link not a URL", func(m *channel.Message) { m.OptOutURL = "/u/tok" }, "bad_message"},
		{"opt-out link with a bracket", func(m *channel.Message) { m.OptOutURL = "https://x.example/u/a>b" }, "bad_message"},
		{"opt-out link javascript", func(m *channel.Message) { m.OptOutURL = "javascript:alert(1)" }, "bad_message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMessage()
			tt.edit(&m)
			_, err := mailer.Send(context.Background(), m)
			var ce *channel.Error
			if !errors.As(err, &ce) || ce.Kind != channel.Permanent || ce.Code != tt.wantCode {
				t.Fatalf("Send: %v, want Permanent %q", err, tt.wantCode)
			}
			if m.To != "" && strings.Contains(err.Error(), m.To) {
				t.Errorf("the error shows the address: %v", err)
			}
			if st := srv.Stats(); st.Conns != 0 {
				t.Errorf("a bad message reached the server: %+v", st)
			}
		})
	}
}

func TestQueueID(t *testing.T) {
	tests := []struct{ reply, want string }{
		{"2.0.0 Ok: queued as 4ZK9pQ1x2Lz3", "4ZK9pQ1x2Lz3"},
		{"Ok: queued as ABC123", "ABC123"},
		{"OK id=1tAbCd-000Xyz-9Q", "1tAbCd-000Xyz-9Q"},
		{"2.0.0 OK: queued", ""},
		{"2.0.0 OK 1700000000 a1b2c3 - gsmtp", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.reply), func(t *testing.T) {
			if got := queueID(tt.reply); got != tt.want {
				t.Errorf("queueID(%q) = %q, want %q", tt.reply, got, tt.want)
			}
		})
	}
}
