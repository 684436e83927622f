package twilio

import (
	"context"
	"fmt"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/contactd/dispatcher/pkg/channel"
)

// optOutLines is the line every SMS ends with, per locale: how to stop
// these messages by reply. The inbound webhook honours each of them.
var optOutLines = map[string]string{
	"zh-CN": "回复TD退订",
	"en":    "Reply STOP to opt out",
}

// SMS sends text messages through Twilio's Messages resource. It is safe
// for concurrent use.
type SMS struct{ c *caller }

// NewSMS returns an SMS adapter for the account in cfg.
func NewSMS(cfg Config) (*SMS, error) {
	c, err := newCaller(cfg)
	if err != nil {
		return nil, err
	}
	return &SMS{c: c}, nil
}

// Close closes the adapter's idle connections to Twilio.
func (s *SMS) Close() error { return s.c.close() }

// Name is the adapter's name, on breakers and metrics.
func (s *SMS) Name() string { return "twilio-sms" }

// Idempotent is false: Twilio takes no idempotency key when a message is
// created, so a repeat sends a second message.
func (s *SMS) Idempotent() bool { return false }

// Send creates a message to m.To: m.Text, then the opt-out link when m has
// one, then the locale's opt-out line. With a MessagingServiceSID the
// message goes through that service, else from From.
func (s *SMS) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	body, err := smsBody(m)
	if err != nil {
		return channel.Receipt{}, err
	}
	p := &openapi.CreateMessageParams{}
	p.SetTo(m.To).SetBody(body)
	if s.c.cfg.MessagingServiceSID != "" {
		p.SetMessagingServiceSid(s.c.cfg.MessagingServiceSID)
	} else {
		p.SetFrom(s.c.cfg.From)
	}
	if s.c.cfg.StatusCallbackURL != "" {
		p.SetStatusCallback(callbackURL(s.c.cfg.StatusCallbackURL, m))
	}
	o := s.c.call(ctx, func(api *openapi.ApiService) (string, error) {
		msg, err := api.CreateMessage(p)
		if err != nil {
			return "", err
		}
		return deref(msg.Sid), nil
	})
	return s.c.receipt(o, "twilio sms: create message")
}

// smsBody is the text sent. A message that cannot carry its opt-out line,
// or says nothing, is not sent: no retry mends it.
func smsBody(m channel.Message) (string, error) {
	line, ok := optOutLines[m.Locale]
	if !ok {
		return "", &channel.Error{Kind: channel.Permanent, Code: "unsupported_locale",
			Err: fmt.Errorf("twilio sms: no opt-out line for locale %q", m.Locale)}
	}
	if m.Text == "" {
		return "", &channel.Error{Kind: channel.Permanent, Code: "empty_text", Err: fmt.Errorf("twilio sms: empty text")}
	}
	body := m.Text
	if m.OptOutURL != "" {
		body += "\n" + m.OptOutURL
	}
	return body + "\n" + line, nil
}
