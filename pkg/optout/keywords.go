package optout

import (
	"strings"
	"unicode"

	"golang.org/x/text/width"
)

// Keyword is what an inbound SMS asks for, when the whole message is one of
// the words carriers and regulators expect a sender to honour.
type Keyword int

// The keywords of an inbound SMS.
const (
	KeywordNone  Keyword = iota // an ordinary message
	KeywordStop                 // TD, 退订, STOP …: opt out
	KeywordStart                // START, UNSTOP: opt back in
	KeywordHelp                 // HELP, 帮助
)

// String is the keyword's name, for logs and metrics.
func (k Keyword) String() string {
	switch k {
	case KeywordStop:
		return "stop"
	case KeywordStart:
		return "start"
	case KeywordHelp:
		return "help"
	}
	return "none"
}

// keywords maps a normalized message to its keyword. T, N and R are the
// replies Chinese SMS footers ask for ("回T退订", "拒收请回复R").
var keywords = map[string]Keyword{
	"TD": KeywordStop, "T": KeywordStop, "N": KeywordStop, "R": KeywordStop,
	"退订": KeywordStop, "拒收": KeywordStop,
	"STOP": KeywordStop, "STOPALL": KeywordStop, "UNSUBSCRIBE": KeywordStop, "CANCEL": KeywordStop,
	"END": KeywordStop, "QUIT": KeywordStop, "REVOKE": KeywordStop, "OPTOUT": KeywordStop,

	"START": KeywordStart, "UNSTOP": KeywordStart,

	"HELP": KeywordHelp, "帮助": KeywordHelp,
}

// ParseKeyword reports which keyword body is. The whole message must be the
// keyword: spaces of any kind around it and punctuation after it are
// ignored, as are letter case and full width (ＴＤ is TD); anything else
// makes it an ordinary message, so "please do not stop" is KeywordNone.
func ParseKeyword(body string) Keyword {
	return keywords[normalizeKeyword(body)]
}

// normalizeKeyword folds full-width forms to ASCII, trims spaces and
// invisible characters at both ends and punctuation at the end, and turns
// ASCII letters to upper case. Only ASCII is case-folded: Unicode folding
// would read "ſtart" (long s) as START, and an opt-in must be unmistakable.
func normalizeKeyword(body string) string {
	s := width.Fold.String(body)
	s = strings.TrimLeftFunc(s, isBlank)
	s = strings.TrimRightFunc(s, func(r rune) bool { return isBlank(r) || isTrailingPunct(r) })
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// isBlank: every Unicode space (NBSP, U+3000 …), and the invisible
// characters phones and copy-paste leave around a word.
func isBlank(r rune) bool {
	switch r {
	case '\u200b', '\u200c', '\u200d', '\u2060', '\ufeff':
		return true
	}
	return unicode.IsSpace(r)
}

// isTrailingPunct: what ends a sentence or trails a word, after width
// folding (so ！ is already !).
func isTrailingPunct(r rune) bool {
	switch r {
	case '.', '!', '?', ',', ';', '~', '。', '、', '…', '〜':
		return true
	}
	return false
}
