package optout_test

import (
	"bytes"
	"errors"
	"html"
	"regexp"
	"strings"
	"testing"

	"github.com/contactd/dispatcher/pkg/optout"
)

func render(t *testing.T, d optout.PageData) string {
	t.Helper()
	var b bytes.Buffer
	if err := optout.RenderPage(&b, d); err != nil {
		t.Fatalf("RenderPage(%+v): %v", d, err)
	}
	return b.String()
}

// byID returns the unescaped text inside the element with the given id, and
// whether there is one. The page never nests an element in one of its own
// tag name, so the first closing tag of that name ends it.
func byID(page, id string) (string, bool) {
	m := regexp.MustCompile(`<([a-z0-9]+)\b[^>]*\bid="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindStringSubmatchIndex(page)
	if m == nil {
		return "", false
	}
	tag := page[m[2]:m[3]]
	rest := page[m[1]:]
	end := strings.Index(rest, "</"+tag+">")
	if end < 0 {
		return "", false
	}
	return text(rest[:end]), true
}

// text strips tags and entities and collapses spaces.
func text(s string) string {
	s = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(s, " ")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

func TestRenderPage(t *testing.T) {
	const bank, phone = "示例银行", "95500"
	action := "/u/AQJrMQBr8U6QAQhELTAwMDEyM87eTZkvCm28_irAhIggauA"
	ids := []string{"optout-form", "confirm", "result", "error"}
	tests := []struct {
		lang, state string
		title       string
		ids         []string            // the ids present; the others must be absent
		texts       map[string][]string // id ("" for the whole page) → texts it shows
	}{
		{"zh-CN", "confirm", "确认退订", []string{"optout-form", "confirm"}, map[string][]string{
			"":        {bank, "退订短信", "不再收到示例银行的短信"},
			"confirm": {"确认退订"},
		}},
		{"en", "confirm", "Unsubscribe", []string{"optout-form", "confirm"}, map[string][]string{
			"":        {bank, "Stop SMS messages?", "not receive SMS messages from " + bank},
			"confirm": {"Unsubscribe"},
		}},
		{"zh-CN", "done", "退订成功", []string{"result"}, map[string][]string{
			"result": {"您已退订", "不再收到示例银行的短信", phone},
		}},
		{"en", "done", "Unsubscribed", []string{"result"}, map[string][]string{
			"result": {"You are unsubscribed", "You will not receive SMS messages from " + bank + " any more", phone},
		}},
		{"zh-CN", "already", "您已退订", []string{"result"}, map[string][]string{
			"result": {"您已退订", "此前已退订", "不会再收到示例银行的短信", phone},
		}},
		{"en", "already", "Already unsubscribed", []string{"result"}, map[string][]string{
			"result": {"already unsubscribed", "you will not receive SMS messages from " + bank + " any more", phone},
		}},
		{"zh-CN", "invalid", "链接无效", []string{"error"}, map[string][]string{
			"error": {"链接无效", "没有任何更改", "客服电话", phone},
		}},
		{"en", "invalid", "Link not valid", []string{"error"}, map[string][]string{
			"error": {"not valid", "Nothing was changed", "call " + bank + " on " + phone},
		}},
		{"zh-CN", "expired", "链接已过期", []string{"error"}, map[string][]string{
			"error": {"已过期", "没有任何更改", "客服电话", phone},
		}},
		{"en", "expired", "Link expired", []string{"error"}, map[string][]string{
			"error": {"expired", "Nothing was changed", "call " + bank + " on " + phone},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.lang+"/"+tt.state, func(t *testing.T) {
			page := render(t, optout.PageData{Lang: tt.lang, BankName: bank, BankPhone: phone, Channel: "sms", State: tt.state, Action: action})
			for _, want := range []string{
				"<!DOCTYPE html>",
				`<html lang="` + tt.lang + `">`,
				`<meta charset="utf-8">`,
				`<meta name="viewport" content="width=device-width, initial-scale=1">`,
				"<title>" + tt.title + " · " + bank + "</title>",
			} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %s", want)
				}
			}
			for _, bad := range []string{"<script", "<link", "<img", "<iframe", "src=", "http://", "https://", "@import", "url("} {
				if strings.Contains(strings.ToLower(page), bad) {
					t.Errorf("page holds %q: no script and no external resource allowed", bad)
				}
			}
			for _, id := range ids {
				_, has := byID(page, id)
				if want := contains(tt.ids, id); has != want {
					t.Errorf("element #%s present: %v, want %v", id, has, want)
				}
			}
			for id, texts := range tt.texts {
				got := text(page)
				if id != "" {
					got, _ = byID(page, id)
				}
				for _, want := range texts {
					if !strings.Contains(got, want) {
						t.Errorf("#%s says %q; want it to say %q", id, got, want)
					}
				}
			}
			if tt.state == "confirm" {
				if !strings.Contains(page, `<form id="optout-form" method="post" action="`+action+`">`) {
					t.Error("the form does not post to the action")
				}
				if !regexp.MustCompile(`<form id="optout-form"[^>]*>\s*<button id="confirm" type="submit">`).MatchString(page) {
					t.Error("the confirm button is not the form's submit button")
				}
			} else if !strings.Contains(page, `href="tel:`+phone+`"`) {
				t.Error("the bank's phone is not a tel: link")
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRenderPageChannels(t *testing.T) {
	tests := []struct {
		channel string
		zh, en  string // the confirm heading
		zhDone  string // the done text
		enDone  string
	}{
		{"sms", "退订短信", "Stop SMS messages?", "不再收到银行的短信", "not receive SMS messages from"},
		{"voice", "退订语音电话", "Stop voice calls?", "不再收到银行的语音电话", "not receive voice calls from"},
		{"email", "退订电子邮件", "Stop e-mails?", "不再收到银行的电子邮件", "not receive e-mails from"},
		{"wechat", "退订微信消息", "Stop WeChat messages?", "不再收到银行的微信消息", "not receive WeChat messages from"},
		{optout.ChannelAll, "退订所有消息", "Stop all messages?", "不再收到银行的任何消息", "not receive any messages from"},
	}
	for _, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			for _, c := range []struct{ lang, state, want string }{
				{"zh-CN", "confirm", tt.zh},
				{"en", "confirm", tt.en},
				{"zh-CN", "done", tt.zhDone},
				{"en", "done", tt.enDone},
				{"zh-CN", "already", tt.zhDone[len("不再"):]},
				{"en", "already", tt.enDone},
			} {
				page := render(t, optout.PageData{Lang: c.lang, BankName: "银行", BankPhone: "95500", Channel: tt.channel, State: c.state, Action: "/u/x"})
				if got := text(page); !strings.Contains(got, c.want) {
					t.Errorf("%s/%s says %q; want %q", c.lang, c.state, got, c.want)
				}
			}
		})
	}
}

func TestRenderPageEscapes(t *testing.T) {
	const hostile = `Bank <script>alert(1)</script> & "Sons" 'Co'`
	tests := []struct {
		name    string
		d       optout.PageData
		absent  []string
		present []string
	}{
		{
			name:    "bank name",
			d:       optout.PageData{Lang: "en", BankName: hostile, BankPhone: "95500", Channel: "sms", State: "done"},
			absent:  []string{"<script>", `"Sons"`},
			present: []string{"Bank &lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Sons&#34; &#39;Co&#39;"},
		},
		{
			name:    "bank name in the title",
			d:       optout.PageData{Lang: "zh-CN", BankName: "</title><script>x</script>", BankPhone: "95500", State: "invalid"},
			absent:  []string{"</title><script>"},
			present: []string{"<title>链接无效 · &lt;/title&gt;&lt;script&gt;x&lt;/script&gt;</title>"},
		},
		{
			name:    "action breaking out of the attribute",
			d:       optout.PageData{Lang: "en", BankName: "B", BankPhone: "95500", Channel: "sms", State: "confirm", Action: `/u/x"><script>alert(1)</script>`},
			absent:  []string{"<script>", `x">`},
			present: []string{`action="/u/x%22%3e%3cscript%3ealert%281%29%3c/script%3e"`},
		},
		{
			name:    "action with a query",
			d:       optout.PageData{Lang: "en", BankName: "B", BankPhone: "95500", Channel: "sms", State: "confirm", Action: "/u/x?lang=en&a=b"},
			present: []string{`action="/u/x?lang=en&amp;a=b"`},
		},
		{
			name:    "javascript action",
			d:       optout.PageData{Lang: "en", BankName: "B", BankPhone: "95500", Channel: "sms", State: "confirm", Action: "javascript:alert(1)"},
			absent:  []string{"javascript:"},
			present: []string{`action="#ZgotmplZ"`},
		},
		{
			name:    "phone",
			d:       optout.PageData{Lang: "en", BankName: "B", BankPhone: `+86 10 95500"><b>`, State: "expired"},
			absent:  []string{"<b>"},
			present: []string{`href="tel:&#43;861095500"`, "&#43;86 10 95500&#34;&gt;&lt;b&gt;"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page := render(t, tt.d)
			for _, s := range tt.absent {
				if strings.Contains(page, s) {
					t.Errorf("page holds %q unescaped:\n%s", s, page)
				}
			}
			for _, s := range tt.present {
				if !strings.Contains(page, s) {
					t.Errorf("page lacks %s:\n%s", s, page)
				}
			}
		})
	}
}

func TestRenderPageRejects(t *testing.T) {
	ok := optout.PageData{Lang: "zh-CN", BankName: "B", BankPhone: "95500", Channel: "sms", State: "confirm", Action: "/u/x"}
	tests := []struct {
		name string
		edit func(*optout.PageData)
	}{
		{"no language", func(d *optout.PageData) { d.Lang = "" }},
		{"unknown language", func(d *optout.PageData) { d.Lang = "fr" }},
		{"language not in its canonical form", func(d *optout.PageData) { d.Lang = "zh" }},
		{"no state", func(d *optout.PageData) { d.State = "" }},
		{"unknown state", func(d *optout.PageData) { d.State = "cancelled" }},
		{"confirm without a channel", func(d *optout.PageData) { d.Channel = "" }},
		{"confirm with an unknown channel", func(d *optout.PageData) { d.Channel = "fax" }},
		{"done with an unknown channel", func(d *optout.PageData) { d.State, d.Channel = "done", "fax" }},
		{"confirm without an action", func(d *optout.PageData) { d.Action = "" }},
		{"no bank name", func(d *optout.PageData) { d.BankName = "" }},
		{"no bank phone", func(d *optout.PageData) { d.State, d.BankPhone = "invalid", "" }},
	}
	render(t, ok)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ok
			tt.edit(&d)
			var b bytes.Buffer
			if err := optout.RenderPage(&b, d); err == nil {
				t.Fatal("RenderPage accepted it")
			}
			if b.Len() != 0 {
				t.Errorf("RenderPage wrote %d bytes before failing", b.Len())
			}
		})
	}
	t.Run("invalid and expired need no channel", func(t *testing.T) {
		for _, st := range []string{"invalid", "expired"} {
			render(t, optout.PageData{Lang: "en", BankName: "B", BankPhone: "95500", State: st})
		}
	})
	t.Run("the writer's error", func(t *testing.T) {
		boom := errors.New("boom")
		if err := optout.RenderPage(failWriter{boom}, ok); !errors.Is(err, boom) {
			t.Fatalf("RenderPage = %v, want the writer's error", err)
		}
	})
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestPickLang(t *testing.T) {
	tests := []struct {
		name          string
		accept, query string
		want          string
	}{
		{"nothing: zh-CN", "", "", "zh-CN"},
		{"query en", "zh-CN", "en", "en"},
		{"query zh", "en", "zh", "zh-CN"},
		{"query zh-CN", "en", "zh-CN", "zh-CN"},
		{"query in another case", "zh-CN", "EN", "en"},
		{"query with a region", "zh-CN", "en-GB", "en"},
		{"query with an underscore", "en", "zh_CN", "zh-CN"},
		{"unknown query: the header decides", "en", "fr", "en"},
		{"blank query: the header decides", "en", " ", "en"},
		{"header en", "en", "", "en"},
		{"header en-US", "en-US,en;q=0.9", "", "en"},
		{"header zh-TW: simplified Chinese is closest", "zh-TW", "", "zh-CN"},
		{"header zh-Hans-CN", "zh-Hans-CN", "", "zh-CN"},
		{"header order when weights tie", "en,zh-CN", "", "en"},
		{"header order when weights tie, zh first", "zh-CN,en", "", "zh-CN"},
		{"q-values over order", "en;q=0.5,zh-CN;q=0.8", "", "zh-CN"},
		{"q-values over order, en higher", "zh;q=0.3, en;q=0.7", "", "en"},
		{"unsupported first", "fr-FR,fr;q=0.9,en;q=0.8,zh;q=0.7", "", "en"},
		{"only unsupported: default", "fr,de;q=0.5", "", "zh-CN"},
		{"spaces around everything", " en ; q=0.9 , zh ; q = 0.95 ", "", "zh-CN"},
		{"Q in capitals", "en;Q=0.9,zh;Q=0.1", "", "en"},
		{"q=1.000", "zh;q=0.9,en;q=1.000", "", "en"},
		{"zh refused, en unnamed", "zh;q=0", "", "en"},
		{"zh refused, wildcard", "zh;q=0,*;q=0.5", "", "en"},
		{"en refused", "en;q=0,fr", "", "zh-CN"},
		{"both refused", "en;q=0,zh;q=0", "", "zh-CN"},
		{"wildcard higher than en", "en;q=0.5,*", "", "zh-CN"},
		{"malformed q drops its entry", "en;q=high,zh;q=0.1", "", "zh-CN"},
		{"q above 1 drops its entry", "en;q=2,zh;q=0.1", "", "zh-CN"},
		{"q with four decimals drops its entry", "zh;q=0.5,en;q=0.9999", "", "zh-CN"},
		{"q=1.5 drops its entry", "zh;q=0.5,en;q=1.5", "", "zh-CN"},
		{"negative q drops its entry", "zh;q=0.5,en;q=-1", "", "zh-CN"},
		{"NaN drops its entry", "zh;q=0.5,en;q=NaN", "", "zh-CN"},
		{"empty entries", ",,en,,", "", "en"},
		{"garbage", ";;;=,=;", "", "zh-CN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := optout.PickLang(tt.accept, tt.query); got != tt.want {
				t.Errorf("PickLang(%q, %q) = %q, want %q", tt.accept, tt.query, got, tt.want)
			}
		})
	}
}
