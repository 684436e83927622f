package catalog_test

import (
	"errors"
	"html"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/catalog"
	"github.com/contactd/dispatcher/pkg/intent"
)

// sample holds a value for every param the shipped templates declare. Each is
// distinct, so finding it in the output proves that param was rendered.
var sample = map[string]string{
	"name":         "Zhang San",
	"amount":       "1,234.56",
	"due_date":     "2026-11-30",
	"promise_date": "2026-12-05",
}

// shippedBank is what configs/templates/bank.yaml says, per locale.
var shippedBank = map[string]struct{ name, phone string }{
	"zh-CN": {"示例银行", "95500"},
	"en":    {"Example Bank", "95500"},
}

func shipped(t testing.TB) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load(configs.FS)
	if err != nil {
		t.Fatalf("Load(configs.FS): %v", err)
	}
	return c
}

func TestLoadShipped(t *testing.T) {
	c := shipped(t)
	tests := []struct {
		name   string
		params []string
	}{
		{"overdue_notice", []string{"name", "amount", "due_date"}},
		{"payment_due_soon", []string{"name", "amount", "due_date"}},
		{"promise_to_pay_reminder", []string{"name", "amount", "promise_date"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, ok := c.Spec(tt.name)
			if !ok {
				t.Fatalf("Spec(%q) not found; names: %v", tt.name, c.Names())
			}
			if !slices.Equal(spec.Params, tt.params) {
				t.Errorf("params = %v, want %v", spec.Params, tt.params)
			}
			for _, loc := range intent.Locales {
				if !slices.Contains(spec.Locales, loc) {
					t.Errorf("locales = %v, missing %s", spec.Locales, loc)
				}
			}
			for _, ch := range intent.Channels {
				if !slices.Contains(spec.Channels, ch) {
					t.Errorf("channels = %v, missing %s", spec.Channels, ch)
				}
			}
		})
	}
}

func TestRenderShipped(t *testing.T) {
	c := shipped(t)
	for _, name := range c.Names() {
		spec, _ := c.Spec(name)
		for _, loc := range spec.Locales {
			bank := shippedBank[loc]
			for _, ch := range spec.Channels {
				t.Run(name+"/"+loc+"/"+string(ch), func(t *testing.T) {
					m, err := c.Render(name, loc, ch, sample)
					if err != nil {
						t.Fatal(err)
					}
					// Every part the channel uses must be there and carry
					// every param, the bank's name and its service line.
					var parts map[string]string
					switch ch {
					case intent.SMS, intent.Voice:
						parts = map[string]string{"Text": m.Text}
					case intent.Email:
						if m.Subject == "" {
							t.Error("empty Subject")
						}
						if !m.OptOutLink {
							t.Error("e-mail must carry the opt-out link")
						}
						parts = map[string]string{"Text": m.Text, "HTML": m.HTML}
					case intent.WeChat:
						if m.Title == "" || len(m.Fields) == 0 {
							t.Fatalf("title %q, %d fields", m.Title, len(m.Fields))
						}
						var vals []string
						for _, f := range m.Fields {
							if f.Key == "" || f.Value == "" {
								t.Errorf("empty field %+v", f)
							}
							vals = append(vals, f.Value)
						}
						parts = map[string]string{"Fields": strings.Join(vals, "\n"), "Text": m.Text}
					}
					for part, s := range parts {
						for _, p := range spec.Params {
							if !strings.Contains(s, sample[p]) {
								t.Errorf("%s lacks param %s (%q):\n%s", part, p, sample[p], s)
							}
						}
						if !strings.Contains(s, bank.phone) {
							t.Errorf("%s lacks the service line %s:\n%s", part, bank.phone, s)
						}
						if ch != intent.WeChat && !strings.Contains(s, bank.name) {
							t.Errorf("%s does not name the bank %s:\n%s", part, bank.name, s)
						}
						if strings.Contains(s, "{{") || strings.Contains(s, "<no value>") {
							t.Errorf("%s has an unrendered placeholder:\n%s", part, s)
						}
					}
					if ch != intent.Email && m.HTML != "" {
						t.Errorf("%s has HTML", ch)
					}
				})
			}
		}
	}
}

// TestShippedWordingStaysPolite guards the wording rules: no threats, no
// legal-action language, no consequences beyond the facts, no third parties.
func TestShippedWordingStaysPolite(t *testing.T) {
	c := shipped(t)
	banned := map[string][]string{
		"zh-CN": {"起诉", "诉讼", "法院", "法律责任", "律师", "公安", "拘留", "坐牢", "刑事", "征信", "失信", "黑名单", "曝光", "家人", "亲友", "单位", "后果", "强制", "最后通牒", "立即还款"},
		"en": {"lawsuit", "court", "legal action", "attorney", "lawyer", "arrest", "jail", "police", "criminal",
			"credit report", "credit bureau", "garnish", "blacklist", "consequence", "family", "employer", "final notice", "immediately"},
	}
	for _, name := range c.Names() {
		spec, _ := c.Spec(name)
		for _, loc := range spec.Locales {
			for _, ch := range spec.Channels {
				t.Run(name+"/"+loc+"/"+string(ch), func(t *testing.T) {
					m, err := c.Render(name, loc, ch, sample)
					if err != nil {
						t.Fatal(err)
					}
					// The HTML says what the e-mail text says, in markup.
					all := strings.ToLower(m.Subject + "\n" + m.Text)
					for _, w := range banned[loc] {
						if strings.Contains(all, w) {
							t.Errorf("wording contains %q", w)
						}
					}
				})
			}
		}
	}
}

// TestSMSLength keeps SMS wording to one segment before params: 70 characters
// in Chinese (UCS-2), 160 in English (GSM-7), the opt-out line included.
func TestSMSLength(t *testing.T) {
	c := shipped(t)
	tests := []struct {
		locale string
		optOut string
		max    int
	}{
		{"zh-CN", "回复TD退订", 70},
		{"en", " Reply STOP to opt out", 160},
	}
	for _, name := range c.Names() {
		for _, tt := range tests {
			t.Run(name+"/"+tt.locale, func(t *testing.T) {
				empty := map[string]string{}
				for p := range sample {
					empty[p] = ""
				}
				m, err := c.Render(name, tt.locale, intent.SMS, empty)
				if err != nil {
					t.Fatal(err)
				}
				if n := utf8.RuneCountInString(m.Text + tt.optOut); n > tt.max {
					t.Errorf("fixed wording + opt-out line is %d characters, want ≤ %d:\n%s", n, tt.max, m.Text)
				}
				if strings.Contains(m.Text, "\n") {
					t.Errorf("SMS has a line break:\n%s", m.Text)
				}
				if tt.locale != "en" {
					return
				}
				full, err := c.Render(name, tt.locale, intent.SMS, sample)
				if err != nil {
					t.Fatal(err)
				}
				if n := len(full.Text); n > tt.max {
					t.Errorf("with sample params it is %d characters, want ≤ %d", n, tt.max)
				}
				for _, r := range full.Text {
					// Plain printable ASCII stays in GSM-7; anything else
					// switches the whole message to UCS-2 and 70 characters.
					if r < ' ' || r > '~' || strings.ContainsRune("[]{}\\^~|`", r) {
						t.Errorf("character %q is not cheap GSM-7", r)
					}
				}
			})
		}
	}
}

// TestVoiceAsksForDebtorFirst: nobody but the debtor hears about the debt.
func TestVoiceAsksForDebtorFirst(t *testing.T) {
	c := shipped(t)
	hangUp := map[string]string{"zh-CN": "挂断", "en": "hang up"}
	for _, name := range c.Names() {
		spec, _ := c.Spec(name)
		for _, loc := range spec.Locales {
			t.Run(name+"/"+loc, func(t *testing.T) {
				m, err := c.Render(name, loc, intent.Voice, sample)
				if err != nil {
					t.Fatal(err)
				}
				first := sentence(m.Text)
				if !strings.Contains(first, sample["name"]) {
					t.Errorf("first sentence %q does not ask for the debtor by name", first)
				}
				if strings.Contains(first, sample["amount"]) {
					t.Errorf("first sentence %q mentions the amount", first)
				}
				i := strings.Index(m.Text, hangUp[loc])
				if i < 0 {
					t.Fatalf("no %q line:\n%s", hangUp[loc], m.Text)
				}
				identity := m.Text[:i+len(sentence(m.Text[i:]))]
				for _, p := range spec.Params {
					if p != "name" && strings.Contains(identity, sample[p]) {
						t.Errorf("%s (%s) is said before the hang-up line:\n%s", p, sample[p], identity)
					}
				}
				for _, p := range spec.Params {
					if !strings.Contains(m.Text[len(identity):], sample[p]) {
						t.Errorf("%s is not said after the identity check", p)
					}
				}
			})
		}
	}
}

// sentence returns s up to and including its first sentence end.
func sentence(s string) string {
	if i := strings.IndexAny(s, "?？。!！\n"); i >= 0 {
		_, n := utf8.DecodeRuneInString(s[i:])
		return s[:i+n]
	}
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// A small catalog for tests that need one of their own.

const testBank = `locales:
  zh-CN: {name: 测试银行, phone: "95511", website: "https://bank.test/"}
  en: {name: Test Bank, phone: "95511", website: "https://bank.test/en"}
`

const testTemplate = `# owner: tests
params: [name, amount]
param_types: {name: text, amount: money}
optout_link: false
locales: [zh-CN, en]
channels: [sms, email, wechat]
wording:
  zh-CN:
    sms:
      text: "{{.bank.name}}：{{.name}}，应还{{.amount}}元。"
    email:
      subject: "{{.bank.name}}通知"
      text: "{{.name}}，应还{{.amount}}元。"
      html: "<p>{{.name}}，应还{{.amount}}元。</p>"
    wechat:
      title: 提醒
      fields:
        - {key: first, value: "{{.name}}"}
        - {key: keyword1, value: "{{.amount}}元"}
  en:
    sms:
      text: "{{.bank.name}}: {{.name}}, CNY {{.amount}} is due."
    email:
      subject: "{{.bank.name}} notice"
      text: "{{.name}}, CNY {{.amount}} is due."
      html: "<p>{{.name}}, CNY {{.amount}} is due.</p>"
    wechat:
      title: Reminder
      fields:
        - {key: first, value: "{{.name}}"}
        - {key: keyword1, value: "CNY {{.amount}}"}
`

func testFS(templates map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{"templates/bank.yaml": {Data: []byte(testBank)}}
	for name, src := range templates {
		fsys["templates/"+name] = &fstest.MapFile{Data: []byte(src)}
	}
	return fsys
}

func testCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Load(testFS(map[string]string{"t.yaml": testTemplate}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

// edit replaces old with new in src, failing if old is not there, so that a
// case cannot silently test the unbroken template.
func edit(t *testing.T, src string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(src, pairs[i]) {
			t.Fatalf("edit: %q not in template", pairs[i])
		}
		src = strings.Replace(src, pairs[i], pairs[i+1], 1)
	}
	return src
}

func TestRenderErrors(t *testing.T) {
	c := testCatalog(t)
	tests := []struct {
		name     string
		template string
		locale   string
		channel  intent.Channel
		params   map[string]string
		want     error
		mentions []string
	}{
		{"unknown template", "nope", "en", intent.SMS, sample, catalog.ErrUnknownTemplate, []string{`"nope"`}},
		{"unsupported locale", "t", "fr", intent.SMS, sample, catalog.ErrUnsupportedLocale, []string{`"fr"`, "zh-CN, en"}},
		{"locale is case-sensitive", "t", "zh-cn", intent.SMS, sample, catalog.ErrUnsupportedLocale, []string{`"zh-cn"`}},
		{"channel not in template", "t", "en", intent.Voice, sample, catalog.ErrUnsupportedChannel, []string{`"voice"`, "sms, email, wechat"}},
		{"unknown channel", "t", "en", intent.Channel("fax"), sample, catalog.ErrUnsupportedChannel, []string{`"fax"`}},
		{"missing param", "t", "en", intent.SMS, map[string]string{"name": "x"}, catalog.ErrMissingParam, []string{"amount"}},
		{"all missing params named", "t", "zh-CN", intent.Email, map[string]string{}, catalog.ErrMissingParam, []string{"name, amount"}},
		{"nil params", "t", "en", intent.WeChat, nil, catalog.ErrMissingParam, []string{"name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := c.Render(tt.template, tt.locale, tt.channel, tt.params)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			for _, s := range tt.mentions {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %s", err, s)
				}
			}
			if !reflectZero(m) {
				t.Errorf("message with error: %+v", m)
			}
		})
	}
}

func reflectZero(m catalog.Message) bool {
	return m.Subject == "" && m.Text == "" && m.HTML == "" && m.Title == "" && m.Fields == nil && !m.OptOutLink
}

func TestRenderIgnoresUndeclaredParams(t *testing.T) {
	c := testCatalog(t)
	params := map[string]string{"name": "N", "amount": "1", "bank": "Evil Bank", "extra": "x"}
	m, err := c.Render("t", "en", intent.SMS, params)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Test Bank: N, CNY 1.00 is due."; m.Text != want {
		t.Errorf("Text = %q, want %q", m.Text, want)
	}
}

// A money param is written the way the template's locale writes amounts;
// other params go in as they came.
func TestRenderMoneyByLocale(t *testing.T) {
	c := testCatalog(t)
	for _, tc := range []struct{ locale, amount, want string }{
		{"en", "1234567.5", "Test Bank: N, CNY 1,234,567.50 is due."},
		{"en", "USD 12", "Test Bank: N, CNY USD 12.00 is due."},
		{"zh-CN", "0001,234.00", ""}, // not an amount: validation refuses it; rendered verbatim if asked
		{"zh-CN", "1234.5 CNY", "测试银行：N，应还1,234.50 CNY元。"},
	} {
		m, err := c.Render("t", tc.locale, intent.SMS, map[string]string{"name": "N", "amount": tc.amount})
		if err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			tc.want = "测试银行：N，应还" + tc.amount + "元。"
		}
		if m.Text != tc.want {
			t.Errorf("%s %q: Text = %q, want %q", tc.locale, tc.amount, m.Text, tc.want)
		}
	}
	spec, _ := c.Spec("t")
	if spec.Types["amount"] != intent.ParamMoney || spec.Types["name"] != intent.ParamText {
		t.Errorf("spec types %v", spec.Types)
	}
}

func TestRenderParts(t *testing.T) {
	c := testCatalog(t)
	params := map[string]string{"name": "李四", "amount": "8.00"}
	tests := []struct {
		name    string
		locale  string
		channel intent.Channel
		want    catalog.Message
	}{
		{"sms", "zh-CN", intent.SMS, catalog.Message{Text: "测试银行：李四，应还8.00元。"}},
		{"email always carries the opt-out link", "en", intent.Email, catalog.Message{
			Subject: "Test Bank notice", Text: "李四, CNY 8.00 is due.", HTML: "<p>李四, CNY 8.00 is due.</p>", OptOutLink: true}},
		{"wechat fields in order, text is title and values", "zh-CN", intent.WeChat, catalog.Message{
			Title:  "提醒",
			Fields: []catalog.Field{{Key: "first", Value: "李四"}, {Key: "keyword1", Value: "8.00元"}},
			Text:   "提醒\n李四\n8.00元"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := c.Render("t", tt.locale, tt.channel, params)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != tt.want.Subject || m.Text != tt.want.Text || m.HTML != tt.want.HTML ||
				m.Title != tt.want.Title || !slices.Equal(m.Fields, tt.want.Fields) || m.OptOutLink != tt.want.OptOutLink {
				t.Errorf("got  %+v\nwant %+v", m, tt.want)
			}
		})
	}
}

func TestOptOutLinkFlag(t *testing.T) {
	src := edit(t, testTemplate, "optout_link: false", "optout_link: true")
	c, err := catalog.Load(testFS(map[string]string{"t.yaml": src}))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []intent.Channel{intent.SMS, intent.Email, intent.WeChat} {
		m, err := c.Render("t", "en", ch, sample)
		if err != nil {
			t.Fatal(err)
		}
		if !m.OptOutLink {
			t.Errorf("%s: OptOutLink false with optout_link: true", ch)
		}
	}
	off := testCatalog(t)
	m, err := off.Render("t", "en", intent.SMS, sample)
	if err != nil {
		t.Fatal(err)
	}
	if m.OptOutLink {
		t.Error("sms: OptOutLink true with optout_link: false")
	}
}

func TestRenderHostileParams(t *testing.T) {
	c := shipped(t)
	long := strings.Repeat("长<b>&'\"x", 8<<10)
	tests := []struct {
		name  string
		value string
	}{
		{"script tag", "<script>alert(1)</script>"},
		{"uppercase script in attribute breakout", `"><SCRIPT SRC=//evil.test/x.js></SCRIPT>`},
		{"template action", "{{.bank.name}}"},
		{"template call", `{{template "x"}}{{printf "%s" .}}`},
		{"broken delimiters", "}}{{"},
		{"entities", "&lt;b&gt; &amp; &#60;"},
		{"very long", long},
		{"rtl override and arabic", "\u202eمرحبا\u202c abc"},
		{"emoji and joiners", "👩‍👩‍👧 张三 🏦"},
		{"newlines and nul", "a\r\nb\x00c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := map[string]string{}
			for p := range sample {
				params[p] = tt.value
			}
			for _, name := range c.Names() {
				for _, loc := range intent.Locales {
					for _, ch := range intent.Channels {
						m, err := c.Render(name, loc, ch, params)
						if err != nil {
							t.Fatalf("%s/%s/%s: %v", name, loc, ch, err)
						}
						base, err := c.Render(name, loc, ch, sample)
						if err != nil {
							t.Fatal(err)
						}
						checkHostile(t, name+"/"+loc+"/"+string(ch), m, base, tt.value)
					}
				}
			}
		})
	}
}

// checkHostile checks m, rendered with value in every param, against base,
// the same message rendered with sample params.
func checkHostile(t *testing.T, where string, m, base catalog.Message, value string) {
	t.Helper()
	if !strings.Contains(m.Text, value) {
		t.Errorf("%s: text does not carry the param verbatim", where)
	}
	for i, f := range m.Fields {
		if strings.Contains(base.Fields[i].Value, sample["name"]) && !strings.Contains(f.Value, value) {
			t.Errorf("%s: field %s does not carry the param verbatim", where, f.Key)
		}
	}
	if m.HTML == "" {
		return
	}
	if strings.Contains(strings.ToLower(m.HTML), "<script") {
		t.Errorf("%s: unescaped <script in HTML", where)
	}
	if strings.ContainsAny(value, `<>&"'`) && strings.Contains(m.HTML, value) {
		t.Errorf("%s: param copied into HTML unescaped", where)
	}
	// Only the template's own tags may be there.
	if got, want := strings.Count(m.HTML, "<"), strings.Count(base.HTML, "<"); got != want {
		t.Errorf("%s: HTML has %d '<', the template alone has %d", where, got, want)
	}
	if !strings.ContainsRune(value, 0) && !strings.Contains(html.UnescapeString(m.HTML), value) {
		t.Errorf("%s: HTML does not carry the param (escaped)", where)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name     string
		files    func(t *testing.T) map[string]string
		noBank   bool
		mentions []string
	}{
		{
			name: "missing locale wording",
			files: func(t *testing.T) map[string]string {
				src := testTemplate[:strings.Index(testTemplate, "  en:\n")]
				return map[string]string{"t.yaml": src}
			},
			mentions: []string{"templates/t.yaml", "wording.en.sms", "missing"},
		},
		{
			name: "undeclared param used",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "CNY {{.amount}} is due.", "CNY {{.amount}} is due on {{.due_date}}.")}
			},
			mentions: []string{"templates/t.yaml", "wording.en.sms.text", "due_date", "not a declared param"},
		},
		{
			name: "undeclared param in a branch never taken",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, `title: Reminder`, `title: "{{if .name}}Reminder{{else}}{{.ssn}}{{end}}"`)}
			},
			mentions: []string{"templates/t.yaml", "wording.en.wechat.title", "ssn", "not a declared param"},
		},
		{
			name: "undeclared param through $",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, `value: "CNY {{.amount}}"`, `value: "{{with .amount}}CNY {{.}}{{else}}{{$.balance}}{{end}}"`)}
			},
			mentions: []string{"templates/t.yaml", "wording.en.wechat.fields[1].value", "balance", "not a declared param"},
		},
		{
			name: "misspelt bank variable",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "{{.bank.name}}通知", "{{.bank.nmae}}通知")}
			},
			mentions: []string{"templates/t.yaml", "wording.zh-CN.email.subject", "nmae"},
		},
		{
			name: "declared channel without wording",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "channels: [sms, email, wechat]", "channels: [sms, email, wechat, voice]")}
			},
			mentions: []string{"templates/t.yaml", "wording.zh-CN.voice", "missing"},
		},
		{
			name: "wording for a channel not declared",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "channels: [sms, email, wechat]", "channels: [sms, email]")}
			},
			mentions: []string{"templates/t.yaml", "wechat", "not listed under channels"},
		},
		{
			name: "bad template syntax",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "应还{{.amount}}元。\"\n    email", "应还{{.amount元。\"\n    email")}
			},
			mentions: []string{"templates/t.yaml", "wording.zh-CN.sms.text"},
		},
		{
			name: "html ends inside an attribute",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, `html: "<p>{{.name}}, CNY`, `html: "<p title='{{.name}}>{{.name}}, CNY`)}
			},
			mentions: []string{"templates/t.yaml", "wording.en.email.html", "non-text context"},
		},
		{
			name: "placeholder where html cannot hold it",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, `html: "<p>{{.name}}, CNY`, `html: "<p style='color:{{.name}}'>{{.name}}, CNY`)}
			},
			mentions: []string{"templates/t.yaml", "wording.en.email.html", "ZgotmplZ"},
		},
		{
			name: "html loads an image",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, `<p>{{.name}}, CNY`, `<img src='https://x.test/p.gif'><p>{{.name}}, CNY`)}
			},
			mentions: []string{"templates/t.yaml", "wording.en.email.html", "<img"},
		},
		{
			name: "sms writes its own opt-out line",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "应还{{.amount}}元。\"\n    email", "应还{{.amount}}元。回复TD退订\"\n    email")}
			},
			mentions: []string{"templates/t.yaml", "wording.zh-CN.sms.text", "opt-out"},
		},
		{
			name: "part the channel does not use",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "    sms:\n      text: \"{{.bank.name}}: ", "    sms:\n      subject: x\n      text: \"{{.bank.name}}: ")}
			},
			mentions: []string{"templates/t.yaml", "wording.en.sms.subject", "not used by sms"},
		},
		{
			name: "declared param never used",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "params: [name, amount]", "params: [name, amount, due_date]")}
			},
			mentions: []string{"templates/t.yaml", "due_date", "no zh-CN wording uses it"},
		},
		{
			name: "params not declared",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "params: [name, amount]\n", "")}
			},
			mentions: []string{"templates/t.yaml", "params: missing"},
		},
		{
			name: "param without a type",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "param_types: {name: text, amount: money}", "param_types: {name: text}")}
			},
			mentions: []string{"templates/t.yaml", "param_types.amount", "missing"},
		},
		{
			name: "unknown param type",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "amount: money}", "amount: currency}")}
			},
			mentions: []string{"templates/t.yaml", "param_types.amount", `unknown type "currency"`},
		},
		{
			name: "type of an undeclared param",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "amount: money}", "amount: money, due: date}")}
			},
			mentions: []string{"templates/t.yaml", "param_types.due", "not listed under params"},
		},
		{
			name: "param named bank",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "params: [name, amount]", "params: [name, amount, bank]")}
			},
			mentions: []string{"templates/t.yaml", "params[2]", "reserved"},
		},
		{
			name: "optout_link not said",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "optout_link: false\n", "")}
			},
			mentions: []string{"templates/t.yaml", "optout_link"},
		},
		{
			name: "unknown locale",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "locales: [zh-CN, en]", "locales: [zh-CN, en, fr]")}
			},
			mentions: []string{"templates/t.yaml", "locales[2]", `"fr"`},
		},
		{
			name: "unknown channel",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "channels: [sms, email, wechat]", "channels: [sms, email, wechat, fax]")}
			},
			mentions: []string{"templates/t.yaml", "channels[3]", `"fax"`},
		},
		{
			name: "misspelt key",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, "    wechat:\n      title: Reminder", "    wechat:\n      titel: Reminder")}
			},
			mentions: []string{"templates/t.yaml", "titel"},
		},
		{
			name: "duplicate wechat key",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"t.yaml": edit(t, testTemplate, `{key: keyword1, value: "CNY`, `{key: first, value: "CNY`)}
			},
			mentions: []string{"templates/t.yaml", "wording.en.wechat.fields[1].key", "twice"},
		},
		{
			name: "bad file name",
			files: func(t *testing.T) map[string]string {
				return map[string]string{"Overdue-Notice.yaml": testTemplate}
			},
			mentions: []string{"templates/Overdue-Notice.yaml", "file name"},
		},
		{
			name:     "empty file",
			files:    func(t *testing.T) map[string]string { return map[string]string{"t.yaml": ""} },
			mentions: []string{"templates/t.yaml", "empty"},
		},
		{
			name:     "no templates",
			files:    func(t *testing.T) map[string]string { return nil },
			mentions: []string{"templates", "no templates"},
		},
		{
			name:     "no bank file",
			files:    func(t *testing.T) map[string]string { return map[string]string{"t.yaml": testTemplate} },
			noBank:   true,
			mentions: []string{"templates/bank.yaml"},
		},
		{
			name: "problems in two files are both reported",
			files: func(t *testing.T) map[string]string {
				return map[string]string{
					"a.yaml": edit(t, testTemplate, "{{.bank.name}}通知", "{{.bank.nmae}}通知"),
					"b.yaml": edit(t, testTemplate, "locales: [zh-CN, en]", "locales: [zh-CN, en, fr]"),
				}
			},
			mentions: []string{"templates/a.yaml", "templates/b.yaml", "2 problem(s)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := testFS(tt.files(t))
			if tt.noBank {
				delete(fsys, "templates/bank.yaml")
			}
			c, err := catalog.Load(fsys)
			if err == nil {
				t.Fatalf("Load succeeded with %v", c.Names())
			}
			if c != nil {
				t.Error("Load returned a catalog with its error")
			}
			for _, s := range tt.mentions {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not mention %q:\n%v", s, err)
				}
			}
		})
	}
}

func TestLoadRejectsBankWithoutTemplateLocale(t *testing.T) {
	fsys := testFS(map[string]string{"t.yaml": testTemplate})
	fsys["templates/bank.yaml"] = &fstest.MapFile{Data: []byte("locales:\n  zh-CN: {name: 测试银行, phone: \"95511\"}\n")}
	_, err := catalog.Load(fsys)
	if err == nil || !strings.Contains(err.Error(), "templates/t.yaml") || !strings.Contains(err.Error(), `"en" has no bank variables`) {
		t.Fatalf("err = %v, want the missing en bank block named", err)
	}
}

// TestLoadDirectory loads an override directory from disk, the way a
// deployment replaces the embedded wording.
func TestLoadDirectory(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{"valid override", map[string]string{"bank.yaml": testBank, "t.yaml": testTemplate}, ""},
		{"broken override", map[string]string{"bank.yaml": testBank, "t.yaml": strings.Replace(testTemplate, "{{.name}}", "{{.nam}}", 1)}, filepath.ToSlash("templates/t.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "templates"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, src := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, "templates", name), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := catalog.Load(os.DirFS(dir))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "nam") {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Names(); !slices.Equal(got, []string{"t"}) {
				t.Errorf("Names = %v, want [t]", got)
			}
		})
	}
}

func TestNamesAndSpec(t *testing.T) {
	c, err := catalog.Load(testFS(map[string]string{"c.yaml": testTemplate, "a.yaml": testTemplate, "b.yaml": testTemplate}))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Names = %v, want [a b c]", got)
	}
	c.Names()[0] = "zzz"
	if got := c.Names()[0]; got != "a" {
		t.Errorf("Names shares its slice: %q after the caller wrote to it", got)
	}

	var templates intent.Templates = c
	spec, ok := templates.Spec("b")
	if !ok {
		t.Fatal("Spec(b) not found")
	}
	want := intent.TemplateSpec{
		Locales:  []string{"zh-CN", "en"},
		Channels: []intent.Channel{intent.SMS, intent.Email, intent.WeChat},
		Params:   []string{"name", "amount"},
	}
	if !slices.Equal(spec.Locales, want.Locales) || !slices.Equal(spec.Channels, want.Channels) || !slices.Equal(spec.Params, want.Params) {
		t.Errorf("Spec = %+v, want %+v", spec, want)
	}
	spec.Params[0] = "changed"
	if again, _ := c.Spec("b"); again.Params[0] != "name" {
		t.Error("Spec shares its slices with the catalog")
	}
	if _, ok := c.Spec("missing"); ok {
		t.Error("Spec(missing) found")
	}
}

func TestRenderConcurrent(t *testing.T) {
	c := shipped(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := map[string]string{"name": strings.Repeat("n", i+1), "amount": "1", "due_date": "d", "promise_date": "p"}
			for range 200 {
				for _, ch := range intent.Channels {
					m, err := c.Render("overdue_notice", intent.Locales[i%2], ch, params)
					if err != nil {
						t.Error(err)
						return
					}
					if !strings.Contains(m.Text, params["name"]) {
						t.Errorf("%s: text of another render: %q", ch, m.Text)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkRender(b *testing.B) {
	c := shipped(b)
	for _, ch := range intent.Channels {
		b.Run(string(ch), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Render("overdue_notice", "zh-CN", ch, sample); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestBank(t *testing.T) {
	c, err := catalog.Load(configs.FS)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Bank("zh-CN"); b["name"] != "示例银行" || b["phone"] != "95500" {
		t.Errorf("zh-CN bank %v", b)
	}
	if b := c.Bank("en"); b["name"] != "Example Bank" {
		t.Errorf("en bank %v", b)
	}
	if b := c.Bank("fr"); b["name"] != "示例银行" {
		t.Errorf("unknown locale: %v, want zh-CN's", b)
	}
}
