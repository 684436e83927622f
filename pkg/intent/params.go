package intent

import (
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Param types a template declares for each of its params (param_types in
// configs/templates/*.yaml).
const (
	// ParamText is short text: a name, a reference. At most MaxTextParamLen
	// characters, no URL or domain name, no bidirectional or zero-width
	// format characters (which can reverse or hide what the debtor reads).
	ParamText = "text"
	// ParamMoney is an amount: a decimal with at most two decimals, digit
	// groups of three separated by commas if any, and an optional ISO 4217
	// currency code before or after it ("1,234.50", "1234.5", "CNY 1234.50").
	// It is rendered by the template's locale.
	ParamMoney = "money"
	// ParamDate is a calendar date, YYYY-MM-DD.
	ParamDate = "date"
)

// ParamTypes lists the param types.
var ParamTypes = []string{ParamText, ParamMoney, ParamDate}

// MaxTextParamLen bounds a text param, in characters.
const MaxTextParamLen = 100

// CheckParam checks a param value against its type and returns the reason
// it does not fit, or "".
func CheckParam(typ, s string) string {
	switch typ {
	case ParamMoney:
		if _, err := ParseMoney(s); err != nil {
			return err.Error()
		}
	case ParamDate:
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return "a date: must be YYYY-MM-DD, such as 2026-11-30"
		}
	default:
		if utf8.RuneCountInString(s) > MaxTextParamLen {
			return "short text: at most 100 characters"
		}
		for _, r := range s {
			if unicode.Is(unicode.Cf, r) {
				return "short text: no bidirectional or zero-width format characters"
			}
		}
		if linkLike.MatchString(s) {
			return "short text: no links, web or e-mail addresses"
		}
	}
	return ""
}

// linkLike finds what a phone or mail client would turn into a link: a
// scheme, www., an e-mail address or a domain name with a common top-level
// domain (ASCII or full-width dots).
var linkLike = regexp.MustCompile(`(?i)[a-z][a-z0-9+.-]*:[/\\]{2}|www[.。．]|[^\s@]@[^\s@]+[.。．]|[a-z0-9-][.。．](com|cn|net|org|info|io|me|xyz|top|site|online|shop|vip|cc|co|ly|link|app|club|tk|ru|biz|us|uk|hk|tw)\b`)

// Money is a checked amount.
type Money struct {
	Units    string // the integer part, digits without separators ("1234")
	Cents    string // two digits
	Currency string // an ISO 4217 code, or ""
}

var (
	moneyNumber = regexp.MustCompile(`^(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]{1,2})?$`)
	currency    = regexp.MustCompile(`^[A-Z]{3}$`)
	errMoney    = errors.New("an amount: a decimal such as 1,234.50 or 1234.5 (at most 2 decimals, at most 15 digits before them), optionally with a currency code: CNY 1234.50")
)

// ParseMoney checks an amount (see ParamMoney).
func ParseMoney(s string) (Money, error) {
	var m Money
	if code, rest, ok := strings.Cut(s, " "); ok {
		switch {
		case currency.MatchString(code):
			m.Currency, s = code, rest
		case currency.MatchString(rest):
			s, m.Currency = code, rest
		default:
			return Money{}, errMoney
		}
	}
	if !moneyNumber.MatchString(s) {
		return Money{}, errMoney
	}
	units, frac, _ := strings.Cut(s, ".")
	units = strings.ReplaceAll(units, ",", "")
	units = strings.TrimLeft(units, "0")
	if units == "" {
		units = "0"
	}
	if len(units) > 15 {
		return Money{}, errMoney
	}
	m.Units, m.Cents = units, (frac + "00")[:2]
	return m, nil
}

// Format renders the amount for locale: digits grouped by three with commas
// and two decimals ("1,234.50") in zh-CN and en alike; the currency code,
// when given, before it in en ("CNY 1,234.50") and after it in zh-CN
// ("1,234.50 CNY").
func (m Money) Format(locale string) string {
	var b strings.Builder
	for i, d := range m.Units {
		if i > 0 && (len(m.Units)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	n := b.String() + "." + m.Cents
	switch {
	case m.Currency == "":
		return n
	case locale == "zh-CN":
		return n + " " + m.Currency
	default:
		return m.Currency + " " + n
	}
}
