package intent

import (
	"strings"
	"testing"
)

func TestCheckParam(t *testing.T) {
	for _, c := range []struct {
		typ, value string
		ok         bool
	}{
		{ParamText, "张三", true},
		{ParamText, "Zhang San Jr.", true},
		{ParamText, "O'Brien-Smith", true},
		{ParamText, "Dr. Li", true},
		{ParamText, "pay at http://evil.example", false},
		{ParamText, "hxxp://x", false}, // any scheme://, even a made-up one
		{ParamText, "HTTPS://EVIL", false},
		{ParamText, "visit www.pay-now", false},
		{ParamText, "evil.com", false},
		{ParamText, "pay-now.cn/x", false},
		{ParamText, "evil。com", false}, // a full-width dot still links in some clients
		{ParamText, "write to a@b.example", false},
		{ParamText, "张\u202e三", false}, // right-to-left override
		{ParamText, "张\u200b三", false}, // zero-width space
		{ParamText, "张\u2066三", false}, // isolate
		{ParamText, strings.Repeat("张", 100), true},
		{ParamText, strings.Repeat("张", 101), false},
		{ParamMoney, "1,234.00", true},
		{ParamMoney, "1234.5", true},
		{ParamMoney, "0", true},
		{ParamMoney, "CNY 1234.50", true},
		{ParamMoney, "1234.50 USD", true},
		{ParamMoney, "0.00. URGENT: pay at http://x", false},
		{ParamMoney, "1,23.00", false},
		{ParamMoney, "12,34", false},
		{ParamMoney, "1.234", false},
		{ParamMoney, "-5", false},
		{ParamMoney, "¥100", false},
		{ParamMoney, "cny 100", false},
		{ParamMoney, "\u202e00.432,1", false},
		{ParamMoney, "1234567890123456", false},
		{ParamMoney, "", false},
		{ParamDate, "2026-11-30", true},
		{ParamDate, "2026-02-30", false},
		{ParamDate, "30/11/2026", false},
		{ParamDate, "2026-11-30 see http://x", false},
	} {
		why := CheckParam(c.typ, c.value)
		if (why == "") != c.ok {
			t.Errorf("CheckParam(%s, %q) = %q, want ok=%v", c.typ, c.value, why, c.ok)
		}
	}
}

func TestMoneyFormat(t *testing.T) {
	for _, c := range []struct{ in, locale, want string }{
		{"1234567.5", "en", "1,234,567.50"},
		{"0001234", "zh-CN", "1,234.00"},
		{"100", "en", "100.00"},
		{"0.5", "en", "0.50"},
		{"CNY 1,234.00", "zh-CN", "1,234.00 CNY"},
		{"1234 USD", "en", "USD 1,234.00"},
	} {
		m, err := ParseMoney(c.in)
		if err != nil {
			t.Fatalf("ParseMoney(%q): %v", c.in, err)
		}
		if got := m.Format(c.locale); got != c.want {
			t.Errorf("%q in %s = %q, want %q", c.in, c.locale, got, c.want)
		}
	}
}

// A template's param types are checked by Validate: a field error per
// value that does not fit, naming the param.
func TestValidateParamTypes(t *testing.T) {
	tpl := fakeTemplates{"typed": {Locales: []string{"zh-CN"}, Channels: []Channel{SMS}, Params: []string{"name", "amount", "due_date"},
		Types: map[string]string{"name": ParamText, "amount": ParamMoney, "due_date": ParamDate}}}
	in := Intent{ID: "I-1", DebtorID: "D-1", Template: "typed", Locale: "zh-CN", Channels: []Channel{SMS},
		To:     Address{Phone: "+8613800138000"},
		Params: map[string]string{"name": "张\u202e三", "amount": "0.00. URGENT: pay at http://x", "due_date": "soon"}}
	err := in.Validate(tpl)
	ie, ok := err.(*Error)
	if !ok {
		t.Fatalf("Validate = %v, want field errors", err)
	}
	got := map[string]string{}
	for _, f := range ie.Fields {
		got[f.Field] = f.Code
	}
	for _, f := range []string{"params.name", "params.amount", "params.due_date"} {
		if got[f] != CodeInvalidFormat {
			t.Errorf("%s: %q, want invalid_format (errors %v)", f, got[f], ie.Fields)
		}
	}
	in.Params = map[string]string{"name": "张三", "amount": "1,234.00", "due_date": "2026-11-30"}
	if err := in.Validate(tpl); err != nil {
		t.Errorf("valid typed params: %v", err)
	}
}
