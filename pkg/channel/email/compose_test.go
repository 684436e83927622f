package email

import (
	"strings"
	"testing"
)

func TestMsgIDLocal(t *testing.T) {
	tests := []struct{ name, id, want string }{
		{"ulid", "01JD3XKQ7M5T8W2R4Y6Z9A1B2C", "01JD3XKQ7M5T8W2R4Y6Z9A1B2C"},
		{"dots and dashes", "a.b_c-d", "a.b_c-d"},
		{"colon", "batch:42", "batch=3A42"},
		{"leading dot", ".a", "=2Ea"},
		{"trailing dot", "a.", "a=2E"},
		{"double dot", "a..b", "a.=2Eb"},
		{"equals sign", "a=3A", "a=3D3A"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := msgIDLocal(tt.id)
			if got != tt.want {
				t.Errorf("msgIDLocal(%q) = %q, want %q", tt.id, got, tt.want)
			}
			if other, ok := seen[got]; ok {
				t.Errorf("%q and %q give the same Message-ID", tt.id, other)
			}
			seen[got] = tt.id
		})
	}
}

func TestWithFooter(t *testing.T) {
	const link = "https://x.example/u/t?a=1&b=2"
	tests := []struct {
		name, text, html, locale string
		wantText, wantHTML       string // substrings
		htmlBeforeBody           bool
	}{
		{"chinese", "正文\n", "<p>正文</p>", "zh-CN", footerTextZH + link, `href="https://x.example/u/t?a=1&amp;b=2"`, false},
		{"english", "Body", "<p>Body</p>", "en-GB", footerTextEN + link, "unsubscribe here</a>", false},
		{"unknown locale is chinese", "Body", "<p>Body</p>", "fr", footerTextZH, "点击此处退订", false},
		{"html document", "Body", "<html><body><p>Body</p></body></html>", "en", footerTextEN, "unsubscribe here", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, htm := withFooter(tt.text, tt.html, link, tt.locale)
			if !strings.HasPrefix(text, strings.TrimRight(tt.text, "\n")) || !strings.Contains(text, tt.wantText) {
				t.Errorf("text %q, want the original then %q", text, tt.wantText)
			}
			if !strings.Contains(htm, tt.wantHTML) {
				t.Errorf("html %q lacks %q", htm, tt.wantHTML)
			}
			if tt.htmlBeforeBody && !strings.HasSuffix(htm, "</p>\n</body></html>") {
				t.Errorf("html %q: the line is not inside <body>", htm)
			}
		})
	}
	if text, htm := withFooter("", "<p>x</p>", link, "zh-CN"); text != "" || !strings.Contains(htm, "退订") {
		t.Errorf("an empty text part got a footer (%q) or the HTML none (%q)", text, htm)
	}
}
