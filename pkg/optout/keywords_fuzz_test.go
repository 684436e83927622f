package optout

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseKeyword: ParseKeyword never panics; normalizing is idempotent,
// so a message already trimmed and folded reads the same; and wrapping a
// message in more spaces and trailing marks never changes what it asks.
func FuzzParseKeyword(f *testing.F) {
	for _, s := range []string{"TD", "ＴＤ", " 退订 ", "  stop.", "Stop!", "退订。", "please do not stop"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		k := ParseKeyword(body)
		if k < KeywordNone || k > KeywordHelp {
			t.Fatalf("ParseKeyword(%q) = %d, not a keyword", body, int(k))
		}
		n := normalizeKeyword(body)
		if again := normalizeKeyword(n); again != n {
			t.Fatalf("normalizing %q gives %q, then %q", body, n, again)
		}
		if got := ParseKeyword(n); got != k {
			t.Fatalf("ParseKeyword(%q) = %v, but of its normal form %q = %v", body, k, n, got)
		}
		if !utf8.ValidString(body) {
			return // padding next to an invalid byte may join it into a rune
		}
		for _, padded := range []string{" " + body + " ", "\u3000" + body + "\u3000", "\u00a0" + body + "。", body + "！", "\t" + body + " .\n"} {
			if got := ParseKeyword(padded); got != k {
				t.Fatalf("ParseKeyword(%q) = %v, but ParseKeyword(%q) = %v", body, k, padded, got)
			}
		}
	})
}
