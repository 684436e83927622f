package intent

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // zone names load on machines without a zoneinfo database

	"github.com/nyaruka/phonenumbers"
)

// fakeTemplates is a catalog held in a map.
type fakeTemplates map[string]TemplateSpec

func (f fakeTemplates) Spec(name string) (TemplateSpec, bool) {
	s, ok := f[name]
	return s, ok
}

var templates = fakeTemplates{
	"overdue_notice": {
		Locales:  []string{"zh-CN", "en"},
		Channels: []Channel{SMS, Voice, Email, WeChat},
		Params:   []string{"name", "amount", "due_date"},
	},
	"sms_zh": {
		Locales:  []string{"zh-CN"},
		Channels: []Channel{SMS},
	},
}

var cst = time.FixedZone("", 8*60*60)

// validIntent is the intent of testdata/intent.json, the example of the
// design.
func validIntent() Intent {
	nb := time.Date(2026, 11, 23, 9, 0, 0, 0, cst)
	ex := time.Date(2026, 11, 30, 0, 0, 0, 0, cst)
	return Intent{
		ID:       "01JD3XK5Q8ZB6V2N4M7P9R1T3W",
		DebtorID: "D-1001",
		DebtID:   "L-2024-0042",
		Template: "overdue_notice",
		Locale:   "zh-CN",
		Channels: []Channel{SMS, WeChat, Email, Voice},
		Fallback: true,
		To: Address{
			Phone:        "+8613800138000",
			Email:        "zhang@example.cn",
			WeChatOpenID: "oX1abcdef123",
		},
		Params:    map[string]string{"name": "张三", "amount": "1,234.00", "due_date": "2026-11-30"},
		Timezone:  "Asia/Shanghai",
		NotBefore: &nb,
		ExpiresAt: &ex,
	}
}

// manyParams returns the example's params plus extra ones, n in all.
func manyParams(n int) map[string]string {
	p := maps.Clone(validIntent().Params)
	for i := 0; len(p) < n; i++ {
		p[fmt.Sprintf("extra_%d", i)] = "x"
	}
	return p
}

func fieldErrors(t *testing.T, err error) []FieldError {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Fields
}

func TestValidateAcceptsValid(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Intent)
	}{
		{"design example", func(*Intent) {}},
		{"id of 128 characters", func(in *Intent) { in.ID = strings.Repeat("a", 128) }},
		{"id of every allowed character", func(in *Intent) { in.ID = "AZaz09._:-" }},
		{"no debt_id", func(in *Intent) { in.DebtID = "" }},
		{"debt_id of 128 printable characters", func(in *Intent) { in.DebtID = strings.Repeat("贷", 128) }},
		{"debt_id with a space", func(in *Intent) { in.DebtID = "L 2024 0042" }},
		{"locale en", func(in *Intent) { in.Locale = "en" }},
		{"one channel with only its address", func(in *Intent) {
			in.Channels = []Channel{Email}
			in.To = Address{Email: "zhang@example.cn"}
		}},
		{"voice needs only a phone", func(in *Intent) {
			in.Channels = []Channel{Voice}
			in.To = Address{Phone: "+14155552671"}
		}},
		{"wechat needs only an openid", func(in *Intent) {
			in.Channels = []Channel{WeChat}
			in.To = Address{WeChatOpenID: "oX1-_Z"}
		}},
		{"openid of 64 characters", func(in *Intent) { in.To.WeChatOpenID = strings.Repeat("o", 64) }},
		{"e-mail of 254 characters", func(in *Intent) {
			in.To.Email = strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
		}},
		{"extra params", func(in *Intent) { in.Params["branch"] = "Shanghai" }},
		{"32 params", func(in *Intent) { in.Params = manyParams(32) }},
		{"param key of 64 characters", func(in *Intent) { in.Params[strings.Repeat("k", 64)] = "v" }},
		{"param value of 512 characters", func(in *Intent) { in.Params["name"] = strings.Repeat("张", 512) }},
		{"empty extra param", func(in *Intent) { in.Params["note"] = "" }},
		{"no timezone", func(in *Intent) { in.Timezone = "" }},
		{"timezone UTC", func(in *Intent) { in.Timezone = "UTC" }},
		{"timezone Etc/GMT-8", func(in *Intent) { in.Timezone = "Etc/GMT-8" }},
		{"no times", func(in *Intent) { in.NotBefore, in.ExpiresAt = nil, nil }},
		{"only expires_at", func(in *Intent) { in.NotBefore = nil }},
		{"template without params", func(in *Intent) {
			in.Template, in.Channels, in.Params = "sms_zh", []Channel{SMS}, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validIntent()
			tt.mutate(&in)
			if err := in.Validate(templates); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

// TestValidateRules has one row per rule; each row breaks one rule of the
// valid intent and expects exactly one FieldError.
func TestValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Intent)
		field  string
		code   string
	}{
		{"id required", func(in *Intent) { in.ID = "" }, "id", CodeRequired},
		{"id at most 128", func(in *Intent) { in.ID = strings.Repeat("a", 129) }, "id", CodeTooLong},
		{"id charset", func(in *Intent) { in.ID = "01JD/3X" }, "id", CodeInvalidFormat},
		{"id no space", func(in *Intent) { in.ID = "01JD 3X" }, "id", CodeInvalidFormat},
		{"debtor_id required", func(in *Intent) { in.DebtorID = "" }, "debtor_id", CodeRequired},
		{"debtor_id at most 128", func(in *Intent) { in.DebtorID = strings.Repeat("d", 129) }, "debtor_id", CodeTooLong},
		{"debtor_id no braces", func(in *Intent) { in.DebtorID = "D-{1001}" }, "debtor_id", CodeInvalidFormat},
		{"debt_id at most 128", func(in *Intent) { in.DebtID = strings.Repeat("贷", 129) }, "debt_id", CodeTooLong},
		{"debt_id printable", func(in *Intent) { in.DebtID = "L-2024\n0042" }, "debt_id", CodeInvalidFormat},
		{"debt_id valid UTF-8", func(in *Intent) { in.DebtID = "L-\xff" }, "debt_id", CodeInvalidFormat},
		{"template required", func(in *Intent) { in.Template = "" }, "template", CodeRequired},
		{"template known", func(in *Intent) { in.Template = "x" }, "template", CodeUnknown},
		{"locale required", func(in *Intent) { in.Locale = "" }, "locale", CodeRequired},
		{"locale known", func(in *Intent) { in.Locale = "fr" }, "locale", CodeUnknown},
		{"locale of the template", func(in *Intent) {
			in.Template, in.Locale, in.Channels, in.Params = "sms_zh", "en", []Channel{SMS}, nil
		}, "locale", CodeUnsupported},
		{"channels required", func(in *Intent) { in.Channels = nil }, "channels", CodeRequired},
		{"channels at most 4", func(in *Intent) { in.Channels = append(in.Channels, SMS) }, "channels", CodeTooMany},
		{"channel known", func(in *Intent) { in.Channels[1] = "fax" }, "channels[1]", CodeUnknown},
		{"channel not twice", func(in *Intent) { in.Channels = []Channel{SMS, Email, SMS} }, "channels[2]", CodeDuplicate},
		{"channel of the template", func(in *Intent) {
			in.Template, in.Channels, in.Params = "sms_zh", []Channel{SMS, Email}, nil
		}, "channels[1]", CodeUnsupported},
		{"sms needs a phone", func(in *Intent) {
			in.Channels, in.To.Phone = []Channel{SMS, Email}, ""
		}, "to.phone", CodeRequired},
		{"voice needs a phone", func(in *Intent) {
			in.Channels, in.To.Phone = []Channel{Voice}, ""
		}, "to.phone", CodeRequired},
		{"phone starts with +", func(in *Intent) { in.To.Phone = "8613800138000" }, "to.phone", CodeInvalidFormat},
		{"phone digits only", func(in *Intent) { in.To.Phone = "+86 138 0013 8000" }, "to.phone", CodeInvalidFormat},
		{"phone a valid number", func(in *Intent) { in.To.Phone = "+8612345" }, "to.phone", CodeInvalidFormat},
		{"phone without national prefix", func(in *Intent) { in.To.Phone = "+4402079460000" }, "to.phone", CodeInvalidFormat},
		{"phone checked when not listed", func(in *Intent) {
			in.Channels, in.To.Phone = []Channel{Email}, "+8612345"
		}, "to.phone", CodeInvalidFormat},
		{"email needs an address", func(in *Intent) { in.To.Email = "" }, "to.email", CodeRequired},
		{"email at most 254", func(in *Intent) {
			in.To.Email = strings.Repeat("a", 64) + "@" + strings.Repeat("b", 187) + ".cn"
		}, "to.email", CodeTooLong},
		{"email syntax", func(in *Intent) { in.To.Email = "zhang@@example.cn" }, "to.email", CodeInvalidFormat},
		{"email bare address", func(in *Intent) { in.To.Email = "Zhang <zhang@example.cn>" }, "to.email", CodeInvalidFormat},
		{"email no angle brackets", func(in *Intent) { in.To.Email = "<zhang@example.cn>" }, "to.email", CodeInvalidFormat},
		{"email no comment", func(in *Intent) { in.To.Email = "zhang@example.cn(Zhang)" }, "to.email", CodeInvalidFormat},
		{"email no invisible characters", func(in *Intent) { in.To.Email = "zhang\u200b@example.cn" }, "to.email", CodeInvalidFormat},
		{"email dot in domain", func(in *Intent) { in.To.Email = "zhang@localhost" }, "to.email", CodeInvalidFormat},
		{"email checked when not listed", func(in *Intent) {
			in.Channels, in.To.Email = []Channel{SMS}, "zhang"
		}, "to.email", CodeInvalidFormat},
		{"wechat needs an openid", func(in *Intent) { in.To.WeChatOpenID = "" }, "to.wechat_openid", CodeRequired},
		{"openid at most 64", func(in *Intent) { in.To.WeChatOpenID = strings.Repeat("o", 65) }, "to.wechat_openid", CodeTooLong},
		{"openid at least 6", func(in *Intent) { in.To.WeChatOpenID = "oX1ab" }, "to.wechat_openid", CodeInvalidFormat},
		{"openid charset", func(in *Intent) { in.To.WeChatOpenID = "oX1abc.def" }, "to.wechat_openid", CodeInvalidFormat},
		{"openid checked when not listed", func(in *Intent) {
			in.Channels, in.To.WeChatOpenID = []Channel{SMS}, "oX1"
		}, "to.wechat_openid", CodeInvalidFormat},
		{"params at most 32", func(in *Intent) { in.Params = manyParams(33) }, "params", CodeTooMany},
		{"param key not empty", func(in *Intent) { in.Params[""] = "x" }, `params[""]`, CodeInvalidFormat},
		{"param key at most 64", func(in *Intent) {
			in.Params[strings.Repeat("k", 65)] = "x"
		}, "params." + strings.Repeat("k", 64) + "…", CodeTooLong},
		{"param key charset", func(in *Intent) { in.Params["due-date"] = "x" }, "params.due-date", CodeInvalidFormat},
		{"param key ASCII", func(in *Intent) { in.Params["姓名"] = "x" }, "params[?]", CodeInvalidFormat},
		{"param value at most 512", func(in *Intent) { in.Params["name"] = strings.Repeat("张", 513) }, "params.name", CodeTooLong},
		{"param value valid UTF-8", func(in *Intent) { in.Params["name"] = "张\xff" }, "params.name", CodeInvalidUTF8},
		{"param value no newline", func(in *Intent) { in.Params["name"] = "张\n三" }, "params.name", CodeInvalidFormat},
		{"param value no carriage return", func(in *Intent) { in.Params["name"] = "张\r三" }, "params.name", CodeInvalidFormat},
		{"param value no tab", func(in *Intent) { in.Params["name"] = "张\t三" }, "params.name", CodeInvalidFormat},
		{"param value no NUL", func(in *Intent) { in.Params["name"] = "张\x00三" }, "params.name", CodeInvalidFormat},
		{"param value no C1 control", func(in *Intent) { in.Params["name"] = "张\u0085三" }, "params.name", CodeInvalidFormat},
		{"param value no line separator", func(in *Intent) { in.Params["name"] = "张\u2028三" }, "params.name", CodeInvalidFormat},
		{"template param present", func(in *Intent) { delete(in.Params, "amount") }, "params.amount", CodeMissingParam},
		{"template param not empty", func(in *Intent) { in.Params["amount"] = "" }, "params.amount", CodeMissingParam},
		{"timezone loads", func(in *Intent) { in.Timezone = "Mars/Olympus_Mons" }, "timezone", CodeUnknown},
		{"timezone not Local", func(in *Intent) { in.Timezone = "Local" }, "timezone", CodeUnknown},
		{"timezone no path", func(in *Intent) { in.Timezone = "../../etc/passwd" }, "timezone", CodeUnknown},
		{"expires_at after not_before", func(in *Intent) {
			e := in.NotBefore.Add(-time.Minute)
			in.ExpiresAt = &e
		}, "expires_at", CodeOutOfOrder},
		{"expires_at not equal to not_before", func(in *Intent) {
			e := in.NotBefore.UTC() // same instant, other zone
			in.ExpiresAt = &e
		}, "expires_at", CodeOutOfOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := validIntent()
			tt.mutate(&in)
			got := fieldErrors(t, in.Validate(templates))
			if len(got) != 1 || got[0].Field != tt.field || got[0].Code != tt.code {
				t.Fatalf("got %+v, want one error %s/%s", got, tt.field, tt.code)
			}
			if got[0].Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestValidateListsEveryProblemInOrder(t *testing.T) {
	in := validIntent()
	in.ID = ""
	in.Template = "nope"
	in.Channels = []Channel{SMS, "fax", SMS}
	in.To = Address{Email: "bad"}
	in.Params = map[string]string{"b": "\n", "a-": "x"}
	in.Timezone = "Local"
	in.ExpiresAt = &time.Time{}

	got := fieldErrors(t, in.Validate(templates))
	want := []FieldError{
		{"id", CodeRequired, ""},
		{"template", CodeUnknown, ""},
		{"channels[1]", CodeUnknown, ""},
		{"channels[2]", CodeDuplicate, ""},
		{"to.phone", CodeRequired, ""},
		{"to.email", CodeInvalidFormat, ""},
		{"params.a-", CodeInvalidFormat, ""},
		{"params.b", CodeInvalidFormat, ""},
		{"timezone", CodeUnknown, ""},
		{"expires_at", CodeOutOfOrder, ""},
	}
	for i := range got {
		got[i].Message = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestValidateMessages(t *testing.T) {
	in := validIntent()
	in.Template = "x"
	in.To.Phone = "+8612345"
	in.Channels[1] = "fax"
	want := `invalid intent: template: unknown template "x"; channels[1]: unknown channel "fax"; to.phone: not a valid E.164 phone number`
	if got := in.Validate(templates).Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestValidateNilTemplatesSkipsCatalogRules(t *testing.T) {
	in := validIntent()
	in.Template = "not_in_any_catalog"
	in.Params = nil
	if err := in.Validate(nil); err != nil {
		t.Fatalf("Validate(nil): %v", err)
	}
	in.To.Phone = "+8612345"
	got := fieldErrors(t, in.Validate(nil))
	if len(got) != 1 || got[0].Field != "to.phone" {
		t.Fatalf("Validate(nil) = %+v, want the to.phone error only", got)
	}
}

// TestErrorsCarryNoPersonalData feeds personal values that break rules, in
// every field that holds them, and in fields that should not hold them.
func TestErrorsCarryNoPersonalData(t *testing.T) {
	const (
		phone  = "+86138001380009999"
		email  = "zhang.san@example"
		openid = "oX1secret!openid"
		value  = "张三 owes 1,234.00\n"
	)
	in := validIntent()
	in.To = Address{Phone: phone, Email: email, WeChatOpenID: openid}
	in.Params = map[string]string{"name": value, "amount": strings.Repeat(value, 100)}
	in.Template = phone
	in.Locale = email
	in.Channels = []Channel{SMS, Channel(openid), Channel(email)}
	in.DebtID = value
	in.Timezone = openid

	var msgs []string
	err := in.Validate(templates)
	msgs = append(msgs, err.Error())
	for _, f := range fieldErrors(t, err) {
		msgs = append(msgs, f.Field, f.Message)
	}
	for _, doc := range []string{
		`{"id":"a","to":{"phone":` + "8613800138000" + `}}`,
		`{"id":"a","` + email + `":1}`,
		`{"id":"a","params":{"name":"` + "张三" + `","name":"x"}}`,
		`{"id":"a","not_before":"` + phone + `"}`,
	} {
		_, err := Decode([]byte(doc))
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs {
		for _, secret := range []string{phone, "8613800138000", email, openid, value, "张三", "1,234.00"} {
			if strings.Contains(m, secret) {
				t.Errorf("message %q contains %q", m, secret)
			}
		}
	}
}

func TestErrorIsOneBoundedLine(t *testing.T) {
	e := &Error{}
	for i := range 200 {
		e.Fields = append(e.Fields, FieldError{Field: fmt.Sprintf("params.p%d", i), Code: CodeTooLong, Message: "line\nbreak\u2028here"})
	}
	s := e.Error()
	if len(s) > 1024 {
		t.Errorf("message is %d bytes", len(s))
	}
	if strings.ContainsAny(s, "\r\n\u2028") {
		t.Errorf("message is not one line: %q", s)
	}
	if !strings.HasSuffix(s, " more") {
		t.Errorf("message does not say how many were left out: %q", s)
	}

	long := &Error{Fields: []FieldError{{Message: strings.Repeat("长", 1000)}}}
	if s := long.Error(); len(s) > 1024 || !strings.HasPrefix(s, "invalid intent: 长") {
		t.Errorf("long message: %d bytes, %q…", len(s), s[:32])
	}
	if s := (&Error{}).Error(); s != "invalid intent" {
		t.Errorf("no fields: %q", s)
	}
}

func TestIsInvalid(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"other", errors.New("boom"), false},
		{"invalid", invalid("id", CodeRequired, "required"), true},
		{"wrapped", fmt.Errorf("decode: %w", invalid("", CodeEmpty, "empty")), true},
		{"from Validate", Intent{}.Validate(templates), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsInvalid(tt.err); got != tt.want {
				t.Errorf("IsInvalid(%v) = %v", tt.err, got)
			}
		})
	}
}

// TestValidPhoneAgreesWithParse checks that building the number from its
// E.164 digits judges as phonenumbers.Parse followed by IsValidNumber does.
func TestValidPhoneAgreesWithParse(t *testing.T) {
	for _, s := range []string{
		"+8613800138000", "+8618912345678", "+862012345678", "+8613800138", "+8612345",
		"+14155552671", "+12025550123", "+11234567890", "+442079460000", "+447911123456",
		"+390612345678", "+393123456789", "+5491112345678", "+4915112345678", "+61412345678",
		"+85291234567", "+85361234567", "+886912345678", "+81312345678", "+80012345678",
		"+99912345678", "+7", "+3", "+123", "+999999999999999",
	} {
		num, err := phonenumbers.Parse(s, "")
		want := err == nil && phonenumbers.IsValidNumber(num) && phonenumbers.Format(num, phonenumbers.E164) == s
		if got := validPhone(s); got != want {
			t.Errorf("validPhone(%q) = %v, Parse and IsValidNumber say %v", s, got, want)
		}
	}
}
