package twilio

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/contactd/dispatcher/pkg/channel"
)

// sayVoice is the language and text-to-speech voice of a <Say>.
type sayVoice struct{ language, voice string }

// sayVoices maps a message locale to the voice that reads it.
var sayVoices = map[string]sayVoice{
	"zh-CN": {language: "zh-CN", voice: "Polly.Zhiyu"},
	"en":    {language: "en-US", voice: "Polly.Joanna"},
}

// callEvents are the call progress events posted to the status callback.
var callEvents = []string{"initiated", "ringing", "answered", "completed"}

// Voice places calls through Twilio's Calls resource that read a message
// aloud once. It is safe for concurrent use.
type Voice struct{ c *caller }

// NewVoice returns a Voice adapter for the account in cfg. A call needs a
// From number: a Messaging Service cannot place calls.
func NewVoice(cfg Config) (*Voice, error) {
	if cfg.From == "" {
		return nil, errors.New("twilio: From is required for calls")
	}
	c, err := newCaller(cfg)
	if err != nil {
		return nil, err
	}
	return &Voice{c: c}, nil
}

// Close closes the adapter's idle connections to Twilio.
func (v *Voice) Close() error { return v.c.close() }

// Name is the adapter's name, on breakers and metrics.
func (v *Voice) Name() string { return "twilio-voice" }

// Idempotent is false: Twilio takes no idempotency key when a call is
// created, so a repeat rings the debtor again.
func (v *Voice) Idempotent() bool { return false }

// Send places a call from From to m.To that says m.Text in the locale's
// voice. m.OptOutURL is not read out: a link is no use on the phone.
func (v *Voice) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	tw, err := twiml(m)
	if err != nil {
		return channel.Receipt{}, err
	}
	p := &openapi.CreateCallParams{}
	p.SetTo(m.To).SetFrom(v.c.cfg.From).SetTwiml(tw)
	if v.c.cfg.StatusCallbackURL != "" {
		p.SetStatusCallback(callbackURL(v.c.cfg.StatusCallbackURL, m)).
			SetStatusCallbackEvent(callEvents).
			SetStatusCallbackMethod(http.MethodPost)
	}
	o := v.c.call(ctx, func(api *openapi.ApiService) (string, error) {
		call, err := api.CreateCall(p)
		if err != nil {
			return "", err
		}
		return deref(call.Sid), nil
	})
	return v.c.receipt(o, "twilio voice: create call")
}

// twiml is the call's script: the text, XML-escaped, said once.
func twiml(m channel.Message) (string, error) {
	sv, ok := sayVoices[m.Locale]
	if !ok {
		return "", &channel.Error{Kind: channel.Permanent, Code: "unsupported_locale",
			Err: fmt.Errorf("twilio voice: no voice for locale %q", m.Locale)}
	}
	if m.Text == "" {
		return "", &channel.Error{Kind: channel.Permanent, Code: "empty_text", Err: errors.New("twilio voice: empty text")}
	}
	var b strings.Builder
	b.WriteString(`<Response><Say language="`)
	b.WriteString(sv.language)
	b.WriteString(`" voice="`)
	b.WriteString(sv.voice)
	b.WriteString(`">`)
	if err := xml.EscapeText(&b, []byte(m.Text)); err != nil {
		return "", &channel.Error{Kind: channel.Permanent, Code: "bad_message", Err: errors.New("twilio voice: text cannot be escaped")}
	}
	b.WriteString(`</Say>`)
	// The "press 1 to be called back" offer goes here, once there is a
	// route to take the answer: a <Gather numDigits="1" action="…"> with
	// the locale's prompt in a <Say>, and the action URL signed like the
	// status callback.
	b.WriteString(`</Response>`)
	return b.String(), nil
}
