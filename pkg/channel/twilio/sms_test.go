package twilio

import (
	"context"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/contactd/dispatcher/pkg/channel"
)

func TestSMSSend(t *testing.T) {
	const (
		zhText = "张三您好，您尾号0042的贷款已逾期，请尽快还款。"
		enText = "Dear Zhang San, your loan ending 0042 is overdue."
		link   = "https://dispatch.example.cn/u/tok123"
	)
	cases := []struct {
		name string
		cfg  func(*Config)
		msg  channel.Message
		want url.Values
	}{
		{
			name: "zh-CN from a number, with link and status callback",
			msg:  channel.Message{To: debtor, Locale: "zh-CN", Text: zhText, OptOutURL: link},
			want: url.Values{
				"To":             {debtor},
				"From":           {testFrom},
				"Body":           {zhText + "\n" + link + "\n回复TD退订"},
				"StatusCallback": {testHook},
			},
		},
		{
			name: "en through a messaging service, no link, no callback",
			cfg:  func(c *Config) { c.From, c.MessagingServiceSID, c.StatusCallbackURL = "", testService, "" },
			msg:  channel.Message{To: debtor, Locale: "en", Text: enText},
			want: url.Values{
				"To":                  {debtor},
				"MessagingServiceSid": {testService},
				"Body":                {enText + "\nReply STOP to opt out"},
			},
		},
		{
			name: "the messaging service is used when From is set too",
			cfg:  func(c *Config) { c.MessagingServiceSID = testService },
			msg:  channel.Message{To: debtor, Locale: "en", Text: enText, OptOutURL: link},
			want: url.Values{
				"To":                  {debtor},
				"MessagingServiceSid": {testService},
				"Body":                {enText + "\n" + link + "\nReply STOP to opt out"},
				"StatusCallback":      {testHook},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			cfg := config(srv)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r, err := newSMS(t, cfg).Send(context.Background(), tc.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if want := "/2010-04-01/Accounts/" + testSID + "/Messages.json"; req.Path != want {
				t.Errorf("path = %q, want %q", req.Path, want)
			}
			if !reflect.DeepEqual(req.Form, tc.want) {
				t.Errorf("form =\n%v\nwant\n%v", req.Form, tc.want)
			}
			if req.SID == "" || !strings.HasPrefix(req.SID, "SM") || len(req.SID) != 34 {
				t.Fatalf("server SID = %q, want SM and 32 more", req.SID)
			}
			want := channel.Receipt{Provider: "twilio", ProviderID: req.SID, At: fixedNow}
			if r != want {
				t.Errorf("receipt = %+v, want %+v", r, want)
			}
		})
	}
}

func TestSMSBasicAuth(t *testing.T) {
	cases := []struct {
		name    string
		sid     string
		token   string
		ok      bool
		created int
	}{
		{name: "account SID and auth token", sid: testSID, token: testToken, ok: true, created: 1},
		{name: "wrong auth token", sid: testSID, token: "wrong0token", created: 0},
		{name: "another account's SID", sid: "AC99999999999999999999999999999999", token: testToken, created: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			cfg := config(srv)
			cfg.AccountSID, cfg.AuthToken = tc.sid, tc.token
			_, err := newSMS(t, cfg).Send(context.Background(), channel.Message{To: debtor, Locale: "en", Text: "hello"})
			if tc.ok != (err == nil) {
				t.Fatalf("Send error = %v, want ok %v", err, tc.ok)
			}
			if err != nil && channel.KindOf(err) != channel.Retryable {
				t.Errorf("kind = %v, want retryable: our credentials, not the debtor", channel.KindOf(err))
			}
			if n := len(srv.Created()); n != tc.created {
				t.Errorf("created %d messages, want %d", n, tc.created)
			}
		})
	}
}

func TestSMSRefusedBeforeSending(t *testing.T) {
	cases := []struct {
		name string
		msg  channel.Message
		code string
	}{
		{name: "locale without an opt-out line", msg: channel.Message{To: debtor, Locale: "fr", Text: "bonjour"}, code: "unsupported_locale"},
		{name: "empty text", msg: channel.Message{To: debtor, Locale: "zh-CN"}, code: "empty_text"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			_, err := newSMS(t, config(srv)).Send(context.Background(), tc.msg)
			var e *channel.Error
			if !errors.As(err, &e) || e.Kind != channel.Permanent || e.Code != tc.code {
				t.Fatalf("error = %v, want permanent %s", err, tc.code)
			}
			if srv.Count() != 0 {
				t.Errorf("server got %d requests, want none", srv.Count())
			}
		})
	}
}

func TestNames(t *testing.T) {
	srv := newServer(t)
	cases := []struct {
		name string
		s    sender
		want string
	}{
		{name: "sms", s: newSMS(t, config(srv)), want: "twilio-sms"},
		{name: "voice", s: newVoice(t, config(srv)), want: "twilio-voice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Name(); got != tc.want {
				t.Errorf("Name = %q, want %q", got, tc.want)
			}
			if tc.s.Idempotent() {
				t.Error("Idempotent = true: Twilio has no idempotency key for creating messages or calls")
			}
		})
	}
}
