package intent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const schemaFile = "../../docs/intent.schema.json"

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile(schemaFile)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return sch
}

// doc is an intent document as a generic JSON object, so tests can break it
// in ways the Intent type cannot express.
type doc map[string]any

func exampleDoc(t *testing.T) doc {
	var d doc
	if err := json.Unmarshal(readExample(t), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d doc) with(path string, v any) doc {
	out := deepCopy(d)
	parent, key := out, path
	if p, k, ok := strings.Cut(path, "."); ok {
		parent, key = out[p].(map[string]any), k
	}
	if v == deleted {
		delete(parent, key)
	} else {
		parent[key] = v
	}
	return out
}

var deleted = new(int)

func deepCopy(d doc) doc {
	b, _ := json.Marshal(d)
	var out doc
	_ = json.Unmarshal(b, &out)
	return out
}

// schemaAgreement lists documents on which the schema and Decode+Validate
// must agree.
func schemaAgreement(t *testing.T) []struct {
	name  string
	doc   doc
	valid bool
} {
	ex := exampleDoc(t)
	params := func(n int) map[string]any {
		p := map[string]any{}
		for k, v := range manyParams(n) {
			p[k] = v
		}
		return p
	}
	return []struct {
		name  string
		doc   doc
		valid bool
	}{
		{"design example", ex, true},
		{"only required fields", doc{
			"id": "i-1", "debtor_id": "D-1", "template": "overdue_notice", "locale": "en", "channels": []any{"email"},
			"to": map[string]any{"email": "a@b.cn"}, "params": map[string]any{"name": "A", "amount": "1", "due_date": "d"},
		}, true},
		{"nulls for optional fields", ex.with("debt_id", nil).with("fallback", nil).with("timezone", nil).
			with("not_before", nil).with("expires_at", nil), true},
		{"empty optional strings", ex.with("debt_id", "").with("timezone", ""), true},
		{"empty address of an unlisted channel", ex.with("channels", []any{"sms"}).with("to.email", "").with("to.wechat_openid", nil), true},
		{"extra param", ex.with("params.branch", "Shanghai"), true},
		{"time in UTC with fraction", ex.with("not_before", "2026-11-23T01:00:00.5Z"), true},
		{"non-ASCII e-mail", ex.with("to.email", "张三@例子.中国"), true},

		{"missing id", ex.with("id", deleted), false},
		{"empty id", ex.with("id", ""), false},
		{"id with a slash", ex.with("id", "a/b"), false},
		{"id too long", ex.with("id", strings.Repeat("a", 129)), false},
		{"id not a string", ex.with("id", 7), false},
		{"missing debtor_id", ex.with("debtor_id", deleted), false},
		{"debtor_id with braces", ex.with("debtor_id", "{D-1001}"), false},
		{"debt_id not printable", ex.with("debt_id", "L\t1"), false},
		{"debt_id too long", ex.with("debt_id", strings.Repeat("贷", 129)), false},
		{"missing template", ex.with("template", deleted), false},
		{"empty template", ex.with("template", ""), false},
		{"missing locale", ex.with("locale", deleted), false},
		{"unknown locale", ex.with("locale", "fr"), false},
		{"missing channels", ex.with("channels", deleted), false},
		{"no channels", ex.with("channels", []any{}), false},
		{"unknown channel", ex.with("channels", []any{"sms", "fax"}), false},
		{"duplicate channel", ex.with("channels", []any{"sms", "sms"}), false},
		{"five channels", ex.with("channels", []any{"sms", "voice", "email", "wechat", "sms"}), false},
		{"channels not an array", ex.with("channels", "sms"), false},
		{"fallback not a boolean", ex.with("fallback", "yes"), false},
		{"unknown field", ex.with("colour", "red"), false},
		{"field name in another case", ex.with("ID", "x"), false},
		{"unknown field in to", ex.with("to.fax", "+8613800138000"), false},
		{"missing to", ex.with("to", deleted), false},
		{"to null", ex.with("to", nil), false},
		{"sms without phone", ex.with("to.phone", deleted), false},
		{"voice without phone", ex.with("channels", []any{"voice"}).with("to.phone", ""), false},
		{"email without address", ex.with("to.email", deleted), false},
		{"wechat without openid", ex.with("to.wechat_openid", nil), false},
		{"phone without plus", ex.with("to.phone", "8613800138000"), false},
		{"phone with spaces", ex.with("to.phone", "+86 138 0013 8000"), false},
		{"phone too long", ex.with("to.phone", "+8613800138000123"), false},
		{"phone not a string", ex.with("to.phone", 8613800138000), false},
		{"e-mail with display name", ex.with("to.email", "Zhang <zhang@example.cn>"), false},
		{"e-mail in angle brackets", ex.with("to.email", "<zhang@example.cn>"), false},
		{"e-mail with a comment", ex.with("to.email", "zhang@example.cn(Zhang)"), false},
		{"e-mail with a zero-width space", ex.with("to.email", "zhang\u200b@example.cn"), false},
		{"e-mail with a line separator", ex.with("to.email", "zhang\u2028@example.cn"), false},
		{"e-mail with a space", ex.with("to.email", "zhang san@example.cn"), false},
		{"e-mail without dot in domain", ex.with("to.email", "zhang@localhost"), false},
		{"e-mail with two @", ex.with("to.email", "zhang@@example.cn"), false},
		{"e-mail too long", ex.with("to.email", strings.Repeat("a", 64)+"@"+strings.Repeat("b", 187)+".cn"), false},
		{"openid too short", ex.with("to.wechat_openid", "oX1ab"), false},
		{"openid with a dot", ex.with("to.wechat_openid", "oX1abc.def"), false},
		{"params not an object", ex.with("params", []any{"a"}), false},
		{"param not a string", ex.with("params.amount", 1234), false},
		{"param key with a dash", ex.with("params.due-date", "x"), false},
		{"param value with newline", ex.with("params.name", "张\n三"), false},
		{"param value too long", ex.with("params.name", strings.Repeat("张", 513)), false},
		{"33 params", ex.with("params", params(33)), false},
		{"timezone Local", ex.with("timezone", "Local"), false},
		{"timezone a path", ex.with("timezone", "../zoneinfo/UTC"), false},
		{"time without T", ex.with("not_before", "2026-11-23 09:00:00+08:00"), false},
		{"time without offset", ex.with("not_before", "2026-11-23T09:00:00"), false},
		{"time not a string", ex.with("expires_at", 1764432000), false},
		{"time offset of 24 hours", ex.with("expires_at", "2026-11-30T00:00:00+24:00"), false},
	}
}

func TestSchemaAgreesWithValidate(t *testing.T) {
	sch := compileSchema(t)
	for _, tt := range schemaAgreement(t) {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			schemaErr := validateSchema(sch, b)
			goErr := decodeValidate(b)
			if (schemaErr == nil) != tt.valid {
				t.Errorf("schema: want valid=%v, got %v", tt.valid, schemaErr)
			}
			if (goErr == nil) != tt.valid {
				t.Errorf("Decode+Validate: want valid=%v, got %v", tt.valid, goErr)
			}
		})
	}
}

// TestSchemaLimits documents what the schema cannot check: it accepts these
// documents, Decode+Validate rejects them.
func TestSchemaLimits(t *testing.T) {
	sch := compileSchema(t)
	ex := exampleDoc(t)
	dup := bytes.Replace(readExample(t), []byte(`"locale":"zh-CN"`), []byte(`"locale":"zh-CN","locale":"en"`), 1)
	tests := []struct {
		name string
		b    []byte
	}{
		{"unknown template", marshal(t, ex.with("template", "x"))},
		{"locale the template lacks", marshal(t, ex.with("template", "sms_zh").with("channels", []any{"sms"}).with("locale", "en"))},
		{"channel the template lacks", marshal(t, ex.with("template", "sms_zh"))},
		{"param the template needs", marshal(t, ex.with("params.amount", deleted))},
		{"phone not in the numbering plan", marshal(t, ex.with("to.phone", "+8612345"))},
		{"unknown time zone", marshal(t, ex.with("timezone", "Mars/Olympus_Mons"))},
		{"expires_at before not_before", marshal(t, ex.with("expires_at", "2026-11-01T00:00:00+08:00"))},
		{"duplicate key", dup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validateSchema(sch, tt.b); err != nil {
				t.Errorf("schema rejects it: %v", err)
			}
			if decodeValidate(tt.b) == nil {
				t.Error("Decode+Validate accepts it")
			}
		})
	}
}

func TestSchemaExamplesAreValid(t *testing.T) {
	sch := compileSchema(t)
	raw := readFile(t, schemaFile)
	var s struct {
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for i, ex := range s.Examples {
		if err := validateSchema(sch, ex); err != nil {
			t.Errorf("example %d: schema: %v", i, err)
		}
		if err := decodeValidate(ex); err != nil {
			t.Errorf("example %d: %v", i, err)
		}
	}
	var got, want doc
	_ = json.Unmarshal(s.Examples[0], &got)
	_ = json.Unmarshal(readExample(t), &want)
	if !maps.EqualFunc(got, want, func(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Errorf("the schema's example differs from testdata/intent.json")
	}
}

func validateSchema(sch *jsonschema.Schema, b []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

func decodeValidate(b []byte) error {
	in, err := Decode(b)
	if err != nil {
		return err
	}
	return in.Validate(templates)
}

func marshal(t *testing.T, d doc) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
