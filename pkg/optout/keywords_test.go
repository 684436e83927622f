package optout_test

import (
	"testing"

	"github.com/contactd/dispatcher/pkg/optout"
)

func TestParseKeyword(t *testing.T) {
	tests := []struct {
		name string
		body string
		want optout.Keyword
	}{
		// Every word, as written.
		{"TD", "TD", optout.KeywordStop},
		{"T", "T", optout.KeywordStop},
		{"N", "N", optout.KeywordStop},
		{"R", "R", optout.KeywordStop},
		{"退订", "退订", optout.KeywordStop},
		{"拒收", "拒收", optout.KeywordStop},
		{"STOP", "STOP", optout.KeywordStop},
		{"STOPALL", "STOPALL", optout.KeywordStop},
		{"UNSUBSCRIBE", "UNSUBSCRIBE", optout.KeywordStop},
		{"CANCEL", "CANCEL", optout.KeywordStop},
		{"END", "END", optout.KeywordStop},
		{"QUIT", "QUIT", optout.KeywordStop},
		{"REVOKE", "REVOKE", optout.KeywordStop},
		{"OPTOUT", "OPTOUT", optout.KeywordStop},
		{"START", "START", optout.KeywordStart},
		{"UNSTOP", "UNSTOP", optout.KeywordStart},
		{"HELP", "HELP", optout.KeywordHelp},
		{"帮助", "帮助", optout.KeywordHelp},

		// How people type them.
		{"full-width TD", "ＴＤ", optout.KeywordStop},
		{"full-width lower-case td", "ｔｄ", optout.KeywordStop},
		{"full-width STOP with full-width bang", "ＳＴＯＰ！", optout.KeywordStop},
		{"退订 between spaces", " 退订 ", optout.KeywordStop},
		{"退订 between ideographic spaces", "\u3000退订\u3000", optout.KeywordStop},
		{"NBSP before td", "\u00a0td", optout.KeywordStop},
		{"tabs and newlines", "\t\nSTOP\r\n", optout.KeywordStop},
		{"zero-width space and BOM", "\ufeffTD\u200b", optout.KeywordStop},
		{"lower case with a full stop", "  stop.", optout.KeywordStop},
		{"Stop!", "Stop!", optout.KeywordStop},
		{"退订。", "退订。", optout.KeywordStop},
		{"退订！", "退订！", optout.KeywordStop},
		{"拒收 with a space before the bang", "拒收 !", optout.KeywordStop},
		{"several marks", "td!!!", optout.KeywordStop},
		{"question mark", "stop?", optout.KeywordStop},
		{"ellipsis", "退订…", optout.KeywordStop},
		{"mixed case", "UnSubScribe", optout.KeywordStop},
		{"mixed case stopall", "stopAll", optout.KeywordStop},
		{"lower-case t", "t", optout.KeywordStop},
		{"start lower case", "start", optout.KeywordStart},
		{"unstop mixed case", "UnStop.", optout.KeywordStart},
		{"help with a question mark", "help?", optout.KeywordHelp},
		{"帮助 full-width question mark", "帮助？", optout.KeywordHelp},

		// Not a keyword.
		{"empty", "", optout.KeywordNone},
		{"spaces only", " \u3000 ", optout.KeywordNone},
		{"punctuation only", "!!", optout.KeywordNone},
		{"a sentence that contains stop", "please do not stop", optout.KeywordNone},
		{"a sentence that starts with stop", "stop calling me at work", optout.KeywordNone},
		{"a sentence that contains 退订", "我要退订短信", optout.KeywordNone},
		{"keyword twice", "STOP STOP", optout.KeywordNone},
		{"stop all as two words", "STOP ALL", optout.KeywordNone},
		{"leading punctuation", ".stop", optout.KeywordNone},
		{"quoted", "\"STOP\"", optout.KeywordNone},
		{"yes is not start", "YES", optout.KeywordNone},
		{"start with a suffix", "STARTED", optout.KeywordNone},
		{"stop with a digit", "STOP1", optout.KeywordNone},
		{"t with a letter", "TX", optout.KeywordNone},
		{"other letter", "Y", optout.KeywordNone},
		{"traditional characters", "退訂", optout.KeywordNone},
		{"long s is not ASCII s", "ſtart", optout.KeywordNone},
		{"Kelvin sign is not K", "\u212aUIT", optout.KeywordNone},
		{"dotless i is not I", "QUıT", optout.KeywordNone},
		{"invalid UTF-8", "STOP\xff", optout.KeywordNone},
		{"a number", "95500", optout.KeywordNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := optout.ParseKeyword(tt.body); got != tt.want {
				t.Errorf("ParseKeyword(%q) = %v, want %v", tt.body, got, tt.want)
			}
		})
	}
}

func TestKeywordString(t *testing.T) {
	for k, want := range map[optout.Keyword]string{
		optout.KeywordNone: "none", optout.KeywordStop: "stop", optout.KeywordStart: "start", optout.KeywordHelp: "help",
		optout.Keyword(99): "none",
	} {
		if got := k.String(); got != want {
			t.Errorf("Keyword(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
