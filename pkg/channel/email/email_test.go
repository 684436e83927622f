package email

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
	"github.com/contactd/dispatcher/pkg/intent"
)

// sender is what the worker needs of an adapter.
type sender interface {
	Send(ctx context.Context, m channel.Message) (channel.Receipt, error)
	Idempotent() bool
	Name() string
}

var _ sender = (*Mailer)(nil)

const (
	testFrom    = "示例银行 <noreply@bank.example>"
	testTo      = "zhang.san@example.cn"
	testIntent  = "01JD3XKQ7M5T8W2R4Y6Z9A1B2C"
	testOptOut  = "https://dispatch.bank.example/u/tok_ABC123-xyz"
	testSubject = "示例银行：关于您账户的通知"
	testText    = "尊敬的张三：\n\n您好！这是示例银行发给您的账户通知。\n您应于2026-11-30归还的借款人民币1,234.00元尚未收到。\n\n示例银行\n"
	testHTML    = "<div style=\"font-family:Arial,'Microsoft YaHei',sans-serif\">\n  <p>尊敬的张三：</p>\n  <p>您应于<strong>2026-11-30</strong>归还的借款人民币<strong>1,234.00</strong>元尚未收到。</p>\n</div>\n"
)

func testMessage() channel.Message {
	return channel.Message{
		IntentID: testIntent, DebtorID: "D-1001", Channel: intent.Email, To: testTo, Locale: "zh-CN",
		Template: "overdue_notice", Subject: testSubject, Text: testText, HTML: testHTML, OptOutURL: testOptOut,
	}
}

// newMailer returns a Mailer for srv (STARTTLS, AUTH as dispatcher/secret)
// after edit changes its configuration.
func newMailer(t *testing.T, srv *smtptest.Server, edit func(*Config)) *Mailer {
	t.Helper()
	cfg := Config{
		Addr: srv.Addr(), Username: "dispatcher", Password: "secret", From: testFrom,
		TLSConfig: srv.TLSConfig(), Timeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// part is one decoded body part.
type part struct {
	mediaType, charset, encoding string
	body                         string // decoded, CRLF turned into LF
}

// parseMessage reads raw with net/mail and mime/multipart.
func parseMessage(t *testing.T, raw []byte) (mail.Header, string, []part) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return msg.Header, mt, []part{decodePart(t, textprotoHeader(msg.Header), msg.Body)}
	}
	var parts []part
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		parts = append(parts, decodePart(t, map[string][]string(p.Header), p))
	}
	return msg.Header, mt, parts
}

func textprotoHeader(h mail.Header) map[string][]string { return map[string][]string(h) }

func decodePart(t *testing.T, h map[string][]string, r io.Reader) part {
	t.Helper()
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	mt, params, err := mime.ParseMediaType(get("Content-Type"))
	if err != nil {
		t.Fatalf("part Content-Type: %v", err)
	}
	p := part{mediaType: mt, charset: strings.ToLower(params["charset"]), encoding: strings.ToLower(get("Content-Transfer-Encoding"))}
	switch p.encoding {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("part body (%s): %v", p.encoding, err)
	}
	if bytes.Count(b, []byte("\n")) != bytes.Count(b, []byte("\r\n")) {
		t.Errorf("%s body has bare LFs: text must be CRLF before encoding", p.mediaType)
	}
	p.body = strings.ReplaceAll(string(b), "\r\n", "\n")
	return p
}

func TestSendWritesTheMessage(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	tests := []struct {
		name      string
		edit      func(*Config)
		msg       func(*channel.Message)
		wantUnsub string // exact List-Unsubscribe; "" absent
		wantPost  string // exact List-Unsubscribe-Post; "" absent
		wantLine  string // the opt-out line in the text body; "" none
	}{
		{
			name:      "opt-out link and mailto",
			edit:      func(c *Config) { c.UnsubscribeMailto = "unsubscribe@bank.example" },
			wantUnsub: "<" + testOptOut + ">, <mailto:unsubscribe@bank.example?subject=unsubscribe>",
			wantPost:  "List-Unsubscribe=One-Click",
			wantLine:  footerTextZH + testOptOut,
		},
		{
			name:      "opt-out link only",
			wantUnsub: "<" + testOptOut + ">",
			wantPost:  "List-Unsubscribe=One-Click",
			wantLine:  footerTextZH + testOptOut,
		},
		{
			name:      "english locale",
			msg:       func(m *channel.Message) { m.Locale = "en" },
			wantUnsub: "<" + testOptOut + ">",
			wantPost:  "List-Unsubscribe=One-Click",
			wantLine:  footerTextEN + testOptOut,
		},
		{
			name:      "http link: no one-click promise",
			msg:       func(m *channel.Message) { m.OptOutURL = "http://localhost:8080/u/tok_1" },
			wantUnsub: "<http://localhost:8080/u/tok_1>",
			wantLine:  footerTextZH + "http://localhost:8080/u/tok_1",
		},
		{
			name: "no opt-out link",
			edit: func(c *Config) { c.UnsubscribeMailto = "unsubscribe@bank.example" },
			msg:  func(m *channel.Message) { m.OptOutURL = "" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			mailer := newMailer(t, srv, tt.edit)
			m := testMessage()
			if tt.msg != nil {
				tt.msg(&m)
			}
			before := time.Now().Add(-time.Second).Truncate(time.Second)
			r, err := mailer.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			after := time.Now().Add(time.Second)
			got := srv.Messages()
			if len(got) != 1 {
				t.Fatalf("server has %d messages, want 1", len(got))
			}
			rcv := got[0]
			if r.Provider != "smtp" || r.ProviderID != rcv.QueueID || rcv.QueueID == "" {
				t.Errorf("receipt %+v, want provider smtp and the queue id %q", r, rcv.QueueID)
			}
			if rcv.From != "noreply@bank.example" || len(rcv.To) != 1 || rcv.To[0] != testTo {
				t.Errorf("envelope from %q to %q", rcv.From, rcv.To)
			}
			if !rcv.TLS || rcv.User != "dispatcher" {
				t.Errorf("session TLS=%v user=%q, want STARTTLS and AUTH as dispatcher", rcv.TLS, rcv.User)
			}

			h, mt, parts := parseMessage(t, rcv.Data)
			from, err := mail.ParseAddress(h.Get("From"))
			if err != nil || from.Name != "示例银行" || from.Address != "noreply@bank.example" {
				t.Errorf("From %q parsed as %v (%v)", h.Get("From"), from, err)
			}
			to, err := mail.ParseAddress(h.Get("To"))
			if err != nil || to.Address != testTo {
				t.Errorf("To %q (%v)", h.Get("To"), err)
			}
			if d, err := h.Date(); err != nil || d.Before(before) || d.After(after) {
				t.Errorf("Date %q (%v), want between %v and %v", h.Get("Date"), err, before, after)
			}
			if got, want := h.Get("Message-Id"), "<"+testIntent+"@bank.example>"; got != want {
				t.Errorf("Message-ID %q, want %q", got, want)
			}
			if got := h.Get(HeaderIntent); got != testIntent {
				t.Errorf("%s %q", HeaderIntent, got)
			}
			if h.Get("MIME-Version") != "1.0" {
				t.Errorf("MIME-Version %q", h.Get("MIME-Version"))
			}
			raw := h.Get("Subject")
			subj, err := new(mime.WordDecoder).DecodeHeader(raw)
			if err != nil || subj != testSubject {
				t.Errorf("Subject %q decodes to %q (%v), want %q", raw, subj, err, testSubject)
			}
			if raw == testSubject || !strings.Contains(raw, "=?") {
				t.Errorf("Subject %q is not RFC 2047 encoded", raw)
			}
			checkHeader(t, h, "List-Unsubscribe", tt.wantUnsub)
			checkHeader(t, h, "List-Unsubscribe-Post", tt.wantPost)

			if mt != "multipart/alternative" {
				t.Fatalf("Content-Type %q, want multipart/alternative", mt)
			}
			if len(parts) != 2 || parts[0].mediaType != "text/plain" || parts[1].mediaType != "text/html" {
				t.Fatalf("parts %+v, want text/plain then text/html", parts)
			}
			for i, orig := range []string{m.Text, m.HTML} {
				p := parts[i]
				if p.charset != "utf-8" {
					t.Errorf("%s charset %q", p.mediaType, p.charset)
				}
				if tt.wantLine == "" {
					if p.body != orig {
						t.Errorf("%s body\n%q\nwant\n%q", p.mediaType, p.body, orig)
					}
					continue
				}
				if !strings.HasPrefix(p.body, strings.TrimRight(orig, "\n")) {
					t.Errorf("%s body does not start with the original:\n%q", p.mediaType, p.body)
				}
			}
			if tt.wantLine != "" {
				if !strings.Contains(parts[0].body, tt.wantLine) {
					t.Errorf("text body lacks the opt-out line %q:\n%s", tt.wantLine, parts[0].body)
				}
				if !strings.Contains(parts[1].body, `href="`+m.OptOutURL+`"`) {
					t.Errorf("HTML body lacks the opt-out link:\n%s", parts[1].body)
				}
			}
		})
	}
}

func checkHeader(t *testing.T, h mail.Header, key, want string) {
	t.Helper()
	vals := h[key]
	switch {
	case want == "" && len(vals) != 0:
		t.Errorf("%s: %q, want none", key, vals)
	case want != "" && (len(vals) != 1 || vals[0] != want):
		t.Errorf("%s: %q, want exactly [%q]", key, vals, want)
	}
}

func TestSendBodies(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	mailer := newMailer(t, srv, nil)
	tests := []struct {
		name      string
		text      string
		html      string
		wantTypes []string
	}{
		{"text and html", testText, testHTML, []string{"text/plain", "text/html"}},
		{"text only", testText, "", []string{"text/plain"}},
		{"html only", "", testHTML, []string{"text/html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Reset()
			m := testMessage()
			m.Text, m.HTML, m.OptOutURL = tt.text, tt.html, ""
			if _, err := mailer.Send(context.Background(), m); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.Messages()
			if len(got) != 1 {
				t.Fatalf("%d messages", len(got))
			}
			_, _, parts := parseMessage(t, got[0].Data)
			var types []string
			for _, p := range parts {
				types = append(types, p.mediaType)
				want := tt.text
				if p.mediaType == "text/html" {
					want = tt.html
				}
				if p.body != want {
					t.Errorf("%s body %q, want %q", p.mediaType, p.body, want)
				}
			}
			if strings.Join(types, ",") != strings.Join(tt.wantTypes, ",") {
				t.Errorf("parts %v, want %v", types, tt.wantTypes)
			}
		})
	}
}

func TestSendReceipt(t *testing.T) {
	tests := []struct {
		name   string
		opts   []smtptest.Option
		wantID func(smtptest.Received) string
	}{
		{"queue id from the final reply", nil, func(r smtptest.Received) string { return r.QueueID }},
		{"message id without a queue id", []smtptest.Option{smtptest.WithoutQueueID()},
			func(smtptest.Received) string { return "<" + testIntent + "@bank.example>" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tt.opts...)
			mailer := newMailer(t, srv, func(c *Config) { c.Username, c.Password = "", "" })
			r, err := mailer.Send(context.Background(), testMessage())
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.Messages()
			if len(got) != 1 {
				t.Fatalf("%d messages", len(got))
			}
			if want := tt.wantID(got[0]); r.ProviderID != want || want == "" {
				t.Errorf("ProviderID %q, want %q", r.ProviderID, want)
			}
			if r.At.IsZero() || r.Provider != Provider {
				t.Errorf("receipt %+v", r)
			}
		})
	}
}

func TestSendTLSModes(t *testing.T) {
	tests := []struct {
		name    string
		opts    []smtptest.Option
		edit    func(*Config)
		wantTLS bool
	}{
		{"starttls", []smtptest.Option{smtptest.WithAuth("u", "p")},
			func(c *Config) { c.Username, c.Password = "u", "p" }, true},
		{"implicit tls", []smtptest.Option{smtptest.WithImplicitTLS(), smtptest.WithAuth("u", "p")},
			func(c *Config) { c.TLS, c.Username, c.Password = TLSImplicit, "u", "p" }, true},
		{"none, allowed", []smtptest.Option{smtptest.WithoutSTARTTLS(), smtptest.WithAuth("u", "p")},
			func(c *Config) { c.TLS, c.AllowPlaintext, c.Username, c.Password = TLSNone, true, "u", "p" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tt.opts...)
			if _, err := newMailer(t, srv, tt.edit).Send(context.Background(), testMessage()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := srv.Messages()
			if len(got) != 1 || got[0].TLS != tt.wantTLS || got[0].User != "u" {
				t.Fatalf("messages %+v, want one with TLS=%v as u", got, tt.wantTLS)
			}
		})
	}
}

func TestSendConcurrently(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.WithAuth("dispatcher", "secret"))
	mailer := newMailer(t, srv, nil)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			m := testMessage()
			m.IntentID = testIntent + string(rune('A'+i))
			_, err := mailer.Send(context.Background(), m)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Send: %v", err)
		}
	}
	if got := len(srv.Messages()); got != n {
		t.Errorf("server has %d messages, want %d", got, n)
	}
}

func TestIdentity(t *testing.T) {
	srv := smtptest.NewServer(t)
	m := newMailer(t, srv, nil)
	if m.Name() != "smtp" || m.Idempotent() {
		t.Errorf("Name %q Idempotent %v, want smtp and false", m.Name(), m.Idempotent())
	}
}
