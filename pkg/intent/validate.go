package intent

import (
	"fmt"
	"net/mail"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Limits of the validation rules.
const (
	MaxIDLen         = 128 // id, debtor_id, debt_id
	MaxChannels      = 4
	MaxEmailLen      = 254
	MinOpenIDLen     = 6
	MaxOpenIDLen     = 64
	MaxParams        = 32
	MaxParamKeyLen   = 64
	MaxParamValueLen = 512 // in characters
	maxZoneLen       = 64
)

// Validate checks the intent against the rules of the intent schema and
// against the template it names, and returns nil or an *Error listing every
// problem found, in the order of the fields (params sorted by key). Each
// field gets at most one FieldError.
//
// Validate does not read the clock: whether the intent has expired is a
// policy decision, taken when it is about to be sent.
//
// A nil t skips the rules that need the template catalog (the template
// exists, is written in the locale, has wording for each channel, and gets
// all its params), so a producer without the catalog can check the rest.
func (in Intent) Validate(t Templates) error {
	var v validator

	v.ident("id", in.ID)
	v.ident("debtor_id", in.DebtorID)
	if in.DebtID != "" {
		switch {
		case utf8.RuneCountInString(in.DebtID) > MaxIDLen:
			v.add("debt_id", CodeTooLong, fmt.Sprintf("must be at most %d characters", MaxIDLen))
		case !printable(in.DebtID):
			v.add("debt_id", CodeInvalidFormat, "must be printable characters only")
		}
	}

	var spec TemplateSpec
	known := false // the template is known to t
	switch {
	case in.Template == "":
		v.add("template", CodeRequired, "required")
	case t != nil:
		if spec, known = t.Spec(in.Template); !known {
			v.add("template", CodeUnknown, "unknown template"+quoted(in.Template))
		}
	}

	switch {
	case in.Locale == "":
		v.add("locale", CodeRequired, "required")
	case !slices.Contains(Locales, in.Locale):
		v.add("locale", CodeUnknown, "unknown locale"+quoted(in.Locale)+", want one of "+strings.Join(Locales, ", "))
	case known && !slices.Contains(spec.Locales, in.Locale):
		v.add("locale", CodeUnsupported, "template"+quoted(in.Template)+" is not written in locale"+quoted(in.Locale))
	}

	listed := v.channels(in.Channels, spec, known)
	v.addresses(in.To, listed)
	v.params(in.Params, spec, known)

	if in.Timezone != "" && !validZone(in.Timezone) {
		v.add("timezone", CodeUnknown, "unknown time zone: must be an IANA name such as Asia/Shanghai")
	}
	if in.NotBefore != nil && in.ExpiresAt != nil && !in.ExpiresAt.After(*in.NotBefore) {
		v.add("expires_at", CodeOutOfOrder, "must be after not_before")
	}

	if len(v.errs) == 0 {
		return nil
	}
	return &Error{Fields: v.errs}
}

type validator struct {
	errs []FieldError
}

func (v *validator) add(field, code, msg string) {
	v.errs = append(v.errs, FieldError{Field: field, Code: code, Message: msg})
}

// has reports whether field already has an error.
func (v *validator) has(field string) bool {
	for _, e := range v.errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

// ident checks id and debtor_id: both go into Redis keys and URLs, debtor_id
// inside a {hash tag}, so the charset has no braces, slashes or spaces.
func (v *validator) ident(field, s string) {
	switch {
	case s == "":
		v.add(field, CodeRequired, "required")
	case len(s) > MaxIDLen:
		v.add(field, CodeTooLong, fmt.Sprintf("must be at most %d characters", MaxIDLen))
	case !isIdent(s):
		v.add(field, CodeInvalidFormat, "must be characters of A-Z a-z 0-9 . _ : - only")
	}
}

// channels checks the channel list and returns the known channels it holds.
func (v *validator) channels(cs []Channel, spec TemplateSpec, known bool) (listed channelSet) {
	for _, c := range cs {
		if c.Known() {
			listed = listed.with(c)
		}
	}
	switch {
	case len(cs) == 0:
		v.add("channels", CodeRequired, "required: at least one channel")
		return listed
	case len(cs) > MaxChannels:
		// Entries are not checked one by one, which bounds the error list.
		v.add("channels", CodeTooMany, fmt.Sprintf("must have at most %d entries", MaxChannels))
		return listed
	}
	var seen channelSet
	for i, c := range cs {
		field := fmt.Sprintf("channels[%d]", i)
		switch {
		case !c.Known():
			v.add(field, CodeUnknown, "unknown channel"+quoted(string(c)))
		case seen.has(c):
			v.add(field, CodeDuplicate, "duplicate channel"+quoted(string(c)))
		case known && !slices.Contains(spec.Channels, c):
			v.add(field, CodeUnsupported, "template has no wording for channel"+quoted(string(c)))
		}
		seen = seen.with(c)
	}
	return listed
}

// addresses checks that each listed channel has its address. An address
// given for a channel that is not listed is checked all the same: a bad
// phone number is bad data whichever channel the intent asks for, and a
// fallback or a later intent may use it.
func (v *validator) addresses(to Address, listed channelSet) {
	switch {
	case to.Phone == "":
		if need := listed.names(SMS, Voice); need != "" {
			v.add("to.phone", CodeRequired, "required for channel "+need)
		}
	case !validPhone(to.Phone):
		v.add("to.phone", CodeInvalidFormat, "not a valid E.164 phone number")
	}

	switch {
	case to.Email == "":
		if listed.has(Email) {
			v.add("to.email", CodeRequired, "required for channel email")
		}
	case len(to.Email) > MaxEmailLen:
		v.add("to.email", CodeTooLong, fmt.Sprintf("must be at most %d bytes", MaxEmailLen))
	case !validEmail(to.Email):
		v.add("to.email", CodeInvalidFormat, "not a valid e-mail address (a bare address, domain with a dot)")
	}

	switch {
	case to.WeChatOpenID == "":
		if listed.has(WeChat) {
			v.add("to.wechat_openid", CodeRequired, "required for channel wechat")
		}
	case len(to.WeChatOpenID) > MaxOpenIDLen:
		v.add("to.wechat_openid", CodeTooLong, fmt.Sprintf("must be at most %d characters", MaxOpenIDLen))
	case !validOpenID(to.WeChatOpenID):
		v.add("to.wechat_openid", CodeInvalidFormat, fmt.Sprintf("must be %d to %d characters of A-Z a-z 0-9 _ -", MinOpenIDLen, MaxOpenIDLen))
	}
}

// params checks keys and values (in key order), then that every param the
// template needs is there (in the template's order). Params the template
// does not use are allowed.
func (v *validator) params(ps map[string]string, spec TemplateSpec, known bool) {
	if len(ps) > MaxParams {
		// Entries are not checked one by one, which bounds the error list.
		v.add("params", CodeTooMany, fmt.Sprintf("must have at most %d entries", MaxParams))
	} else if len(ps) > 0 {
		keys := make([]string, 0, len(ps))
		for k := range ps {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field := keyPath("params", k)
			switch {
			case k == "":
				v.add(field, CodeInvalidFormat, "key must not be empty")
			case len(k) > MaxParamKeyLen:
				v.add(field, CodeTooLong, fmt.Sprintf("key must be at most %d characters", MaxParamKeyLen))
			case !isWord(k):
				v.add(field, CodeInvalidFormat, "key must be characters of A-Z a-z 0-9 _ only")
			default:
				v.paramValue(field, ps[k])
			}
		}
	}
	if !known {
		return
	}
	for _, p := range spec.Params {
		if ps[p] == "" {
			v.add(keyPath("params", p), CodeMissingParam, "required by the template, missing or empty")
			continue
		}
		typ := spec.Types[p]
		if typ == "" || v.has(keyPath("params", p)) {
			continue // untyped (the catalog types every param), or already refused
		}
		if why := CheckParam(typ, ps[p]); why != "" {
			v.add(keyPath("params", p), CodeInvalidFormat, "must be "+why)
		}
	}
}

// paramValue checks a param value. Values end up in SMS bodies and e-mail
// headers, so no control characters at all (not even \t, \n, \r), nor the
// Unicode line and paragraph separators.
func (v *validator) paramValue(field, s string) {
	if !utf8.ValidString(s) {
		v.add(field, CodeInvalidUTF8, "value must be valid UTF-8")
		return
	}
	n := 0
	for _, r := range s {
		n++
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			v.add(field, CodeInvalidFormat, "value must not contain control characters or line breaks")
			return
		}
	}
	if n > MaxParamValueLen {
		v.add(field, CodeTooLong, fmt.Sprintf("value must be at most %d characters", MaxParamValueLen))
	}
}

// channelSet is a set of known channels.
type channelSet uint8

func (s channelSet) bit(c Channel) channelSet {
	if i := slices.Index(Channels, c); i >= 0 {
		return 1 << i
	}
	return 0
}
func (s channelSet) with(c Channel) channelSet { return s | s.bit(c) }
func (s channelSet) has(c Channel) bool        { return s&s.bit(c) != 0 }

// names lists which of cs are in s, as "sms" or "sms, voice".
func (s channelSet) names(cs ...Channel) string {
	var b strings.Builder
	for _, c := range cs {
		if s.has(c) {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(string(c))
		}
	}
	return b.String()
}

// quoted returns ` "s"` for a short name of harmless characters, to repeat
// it in a message, and "" for anything else: a message must never carry
// data that could be personal or break the line.
func quoted(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isWordByte(c) && c != '-' && c != '.' {
			return ""
		}
	}
	return ` "` + s + `"`
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isWordByte(c), c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func isWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return false
		}
	}
	return true
}

// printable reports whether s is valid UTF-8 of printable characters
// (unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the
// ASCII space).
func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}

// validPhone accepts a phone number written in E.164 exactly ("+" and up to
// 15 digits, no spaces or punctuation) that phonenumbers.IsValidNumber
// finds valid. Such a string needs no parser: the calling code is the one
// prefix of 1 to 3 digits that is a calling code, the rest is the national
// significant number. Building the number directly is three times cheaper
// than phonenumbers.Parse, whose work is for free-form input, and a national
// prefix ("+44 0…"), which Parse would strip, stays invalid.
func validPhone(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	digits := s[1:]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	cc := countryCodeLen(digits)
	if cc == 0 {
		return false
	}
	code, _ := strconv.ParseInt(digits[:cc], 10, 32)
	national := digits[cc:]
	nn, err := strconv.ParseUint(national, 10, 64)
	if err != nil {
		return false
	}
	code32 := int32(code)
	num := &phonenumbers.PhoneNumber{CountryCode: &code32, NationalNumber: &nn}
	if zeros := len(national) - len(strings.TrimLeft(national, "0")); zeros > 0 {
		// Italian-style numbers keep their leading zeros (+39 06…).
		zeros = min(zeros, len(national)-1)
		z32, yes := int32(zeros), true
		num.ItalianLeadingZero, num.NumberOfLeadingZeros = &yes, &z32
	}
	return phonenumbers.IsValidNumber(num)
}

// validEmail accepts a bare addr-spec ("zhang@example.cn"): no display
// name, angle brackets, comments, quoted local part, domain literal,
// whitespace or invisible characters, and a dot in the domain.
func validEmail(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return false
	}
	domain := s[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, "[") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s
}

func validOpenID(s string) bool {
	if len(s) < MinOpenIDLen || len(s) > MaxOpenIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isWordByte(c) && c != '-' {
			return false
		}
	}
	return true
}

// zones caches the names time.LoadLocation accepted, since it reads the
// zone database on every call. Only valid names are kept, so the cache is
// bounded by the size of that database.
var zones sync.Map

// validZone accepts an IANA time zone name. "Local" (the server's zone) and
// "" (which LoadLocation takes as UTC) are not names of a debtor's zone.
func validZone(s string) bool {
	if s == "" || s == "Local" || len(s) > maxZoneLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isWordByte(c), c == '/', c == '-', c == '+':
		default:
			return false // also keeps LoadLocation away from paths like "../x"
		}
	}
	if _, ok := zones.Load(s); ok {
		return true
	}
	if _, err := time.LoadLocation(s); err != nil {
		return false
	}
	zones.Store(s, struct{}{})
	return true
}

// ValidPhone reports whether s is a valid phone number written in E.164, as
// an intent's to.phone must be.
func ValidPhone(s string) bool { return validPhone(s) }
