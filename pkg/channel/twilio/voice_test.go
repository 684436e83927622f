package twilio

import (
	"context"
	"encoding/xml"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/contactd/dispatcher/pkg/channel"
)

func TestVoiceSend(t *testing.T) {
	events := []string{"initiated", "ringing", "answered", "completed"}
	cases := []struct {
		name  string
		cfg   func(*Config)
		msg   channel.Message
		twiml string
		want  url.Values // besides Twiml
	}{
		{
			name:  "zh-CN, escaped, with status callback",
			msg:   channel.Message{To: debtor, Locale: "zh-CN", Text: "您好张三 & <co>，请尽快还款。", OptOutURL: "https://dispatch.example.cn/u/t"},
			twiml: `<Response><Say language="zh-CN" voice="Polly.Zhiyu">您好张三 &amp; &lt;co&gt;，请尽快还款。</Say></Response>`,
			want: url.Values{
				"To":                   {debtor},
				"From":                 {testFrom},
				"StatusCallback":       {testHook},
				"StatusCallbackEvent":  events,
				"StatusCallbackMethod": {"POST"},
			},
		},
		{
			name:  "en, quotes escaped, no status callback",
			cfg:   func(c *Config) { c.StatusCallbackURL = "" },
			msg:   channel.Message{To: debtor, Locale: "en", Text: `Dear "Li" & co`},
			twiml: `<Response><Say language="en-US" voice="Polly.Joanna">Dear &#34;Li&#34; &amp; co</Say></Response>`,
			want:  url.Values{"To": {debtor}, "From": {testFrom}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			cfg := config(srv)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r, err := newVoice(t, cfg).Send(context.Background(), tc.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			req := reqs[0]
			if want := "/2010-04-01/Accounts/" + testSID + "/Calls.json"; req.Path != want {
				t.Errorf("path = %q, want %q", req.Path, want)
			}
			got := req.Form.Get("Twiml")
			if got != tc.twiml {
				t.Errorf("Twiml =\n%s\nwant\n%s", got, tc.twiml)
			}
			// The script reads back as the text, said once.
			var doc struct {
				Say []struct {
					Language string `xml:"language,attr"`
					Text     string `xml:",chardata"`
				}
			}
			if err := xml.Unmarshal([]byte(got), &doc); err != nil {
				t.Fatalf("Twiml is not XML: %v", err)
			}
			if len(doc.Say) != 1 || doc.Say[0].Text != tc.msg.Text {
				t.Errorf("Say = %+v, want the text once", doc.Say)
			}
			form := url.Values{}
			for k, v := range req.Form {
				if k != "Twiml" {
					form[k] = v
				}
			}
			if !reflect.DeepEqual(form, tc.want) {
				t.Errorf("form =\n%v\nwant\n%v", form, tc.want)
			}
			if !strings.HasPrefix(req.SID, "CA") || len(req.SID) != 34 {
				t.Fatalf("server SID = %q, want CA and 32 more", req.SID)
			}
			want := channel.Receipt{Provider: "twilio", ProviderID: req.SID, At: fixedNow}
			if r != want {
				t.Errorf("receipt = %+v, want %+v", r, want)
			}
		})
	}
}

func TestNewVoiceNeedsFrom(t *testing.T) {
	_, err := NewVoice(Config{AccountSID: testSID, AuthToken: testToken, MessagingServiceSID: testService})
	if err == nil {
		t.Fatal("NewVoice without From: no error; a messaging service cannot place calls")
	}
	if _, err := NewSMS(Config{AccountSID: testSID, AuthToken: testToken, MessagingServiceSID: testService}); err != nil {
		t.Fatalf("NewSMS with a messaging service only: %v", err)
	}
}
