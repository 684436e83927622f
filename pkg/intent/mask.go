package intent

import (
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// The masks below are used wherever an address is shown: API responses, the
// ops page, logs. They work on any input, valid or not, and never panic.

// MaskPhone masks a phone number. It keeps the country code, and of the
// national number the first three and the last four digits when it has 11
// digits or more (the usual mainland form: +86138****8000). A shorter
// national number shows at most half its digits, the last ones first: a
// 10-digit one keeps one and four (+14*****2671), an 8-digit one the last
// four (+852****5678). Anything other than digits and a leading "+" is
// dropped, so a mistyped e-mail address in the phone field does not show.
func MaskPhone(s string) string {
	if s == "" {
		return ""
	}
	plus := s[0] == '+'
	digits := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; '0' <= c && c <= '9' {
			digits = append(digits, c)
		}
	}
	if len(digits) == 0 {
		return "****"
	}
	cc := 0
	if plus {
		cc = countryCodeLen(digits)
	}
	national := len(digits) - cc
	head, tail := 3, 4
	if national < 11 {
		shown := national / 2
		tail = min(4, shown)
		head = min(3, shown-tail)
	}
	var b strings.Builder
	b.Grow(len(digits) + 1)
	if plus {
		b.WriteByte('+')
	}
	b.Write(digits[:cc+head])
	b.WriteString(strings.Repeat("*", national-head-tail))
	b.Write(digits[len(digits)-tail:])
	return b.String()
}

// countryCodeLen returns the length of the calling code that starts digits
// (calling codes are prefix-free, 1 to 3 digits), or 0 if there is none.
func countryCodeLen[T string | []byte](digits T) int {
	if len(digits) == 0 || digits[0] == '0' {
		return 0
	}
	codes := phonenumbers.GetSupportedCallingCodes()
	n := 0
	for i := 0; i < phonenumbers.MAX_LENGTH_COUNTRY_CODE && i < len(digits)-1; i++ {
		n = n*10 + int(digits[i]-'0')
		if codes[n] {
			return i + 1
		}
	}
	return 0
}

// MaskEmail keeps the first character of the local part and the domain:
// "zhang@example.cn" becomes "z***@example.cn". A one-character local part
// is hidden entirely; the mask does not show the local part's length.
// Without an "@", only "***" remains.
func MaskEmail(s string) string {
	if s == "" {
		return ""
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "***"
	}
	local, domain := s[:at], s[at+1:]
	first := ""
	if r, n := utf8.DecodeRuneInString(local); r != utf8.RuneError && utf8.RuneCountInString(local) >= 2 {
		first = local[:n]
	}
	return first + "***@" + domain
}

// MaskOpenID keeps up to three characters at each end of a WeChat openid
// and never more than half of it: "oX1abcdef123" becomes "oX1***123", a
// 6-character one keeps one at each end, a shorter one nothing.
func MaskOpenID(s string) string {
	if s == "" {
		return ""
	}
	rs := []rune(s)
	keep := min(3, len(rs)/4)
	if len(rs) < MinOpenIDLen {
		keep = 0
	}
	return string(rs[:keep]) + "***" + string(rs[len(rs)-keep:])
}

// MaskAddress masks the address of channel c. An unknown channel's address
// is hidden entirely.
func MaskAddress(c Channel, addr string) string {
	switch c {
	case SMS, Voice:
		return MaskPhone(addr)
	case Email:
		return MaskEmail(addr)
	case WeChat:
		return MaskOpenID(addr)
	}
	if addr == "" {
		return ""
	}
	return "***"
}

// Masked returns a with every address masked; empty ones stay empty.
func (a Address) Masked() Address {
	return Address{
		Phone:        MaskPhone(a.Phone),
		Email:        MaskEmail(a.Email),
		WeChatOpenID: MaskOpenID(a.WeChatOpenID),
	}
}
