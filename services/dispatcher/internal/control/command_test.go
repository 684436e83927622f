package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/contactd/dispatcher/pkg/intent"
)

const schemaFile = "../../../../docs/control.schema.json"

type doc map[string]any

func (d doc) with(k string, v any) doc {
	out := doc{}
	for kk, vv := range d {
		out[kk] = vv
	}
	if v == deleted {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

var deleted = new(int)

var (
	cancelDoc  = doc{"type": "cancel", "command_id": "c-1", "debtor_id": "D-1", "intent_id": "I-1", "reason": "paid"}
	holdDoc    = doc{"type": "hold", "command_id": "c-2", "debtor_id": "D-1", "reason": "promise_to_pay"}
	releaseDoc = doc{"type": "release", "command_id": "c-3", "debtor_id": "D-1", "hold_id": "H-1"}
)

// cases are documents on which the schema and Decode must agree, with the
// code Decode gives the invalid ones.
var cases = []struct {
	name string
	doc  doc
	code string // "" for a valid command
}{
	{"cancel", cancelDoc, ""},
	{"cancel with note and actor", cancelDoc.with("note", "paid at 23:40 (branch 12)").with("actor", "loan-core/payments"), ""},
	{"cancel with null note", cancelDoc.with("note", nil), ""},
	{"hold of a debtor", holdDoc, ""},
	{"hold of a debt until Friday", holdDoc.with("debt_id", "L-1").with("until", "2026-11-27T10:00:00+08:00"), ""},
	{"hold with a given id", holdDoc.with("hold_id", "PTP-0091"), ""},
	{"hold with empty optional ids", holdDoc.with("debt_id", "").with("hold_id", ""), ""},
	{"hold until in UTC with a fraction", holdDoc.with("until", "2026-11-27T02:00:00.5Z"), ""},
	{"release", releaseDoc, ""},
	{"release with actor", releaseDoc.with("actor", "collector@bank"), ""},

	{"no type", cancelDoc.with("type", deleted), intent.CodeRequired},
	{"unknown type", cancelDoc.with("type", "pause"), intent.CodeUnknown},
	{"type not a string", cancelDoc.with("type", 1), intent.CodeWrongType},
	{"no command_id", cancelDoc.with("command_id", deleted), intent.CodeRequired},
	{"null command_id", cancelDoc.with("command_id", nil), intent.CodeRequired},
	{"command_id with a slash", cancelDoc.with("command_id", "a/b"), intent.CodeInvalidFormat},
	{"command_id too long", cancelDoc.with("command_id", strings.Repeat("a", 129)), intent.CodeInvalidFormat},
	{"no debtor_id", holdDoc.with("debtor_id", deleted), intent.CodeRequired},
	{"debtor_id with braces", holdDoc.with("debtor_id", "{D-1}"), intent.CodeInvalidFormat},
	{"cancel without intent_id", cancelDoc.with("intent_id", deleted), intent.CodeRequired},
	{"cancel without reason", cancelDoc.with("reason", deleted), intent.CodeRequired},
	{"cancel with a hold's reason list", cancelDoc.with("reason", "unknown"), intent.CodeInvalidFormat},
	{"cancel note too long", cancelDoc.with("note", strings.Repeat("付", 257)), intent.CodeTooLong},
	{"cancel note with a newline", cancelDoc.with("note", "a\nb"), intent.CodeInvalidFormat},
	{"cancel with until", cancelDoc.with("until", "2026-11-27T10:00:00+08:00"), intent.CodeUnknownField},
	{"cancel with null hold_id", cancelDoc.with("hold_id", nil), intent.CodeUnknownField},
	{"hold without reason", holdDoc.with("reason", deleted), intent.CodeRequired},
	{"hold for sold", holdDoc.with("reason", "sold"), intent.CodeInvalidFormat},
	{"hold with intent_id", holdDoc.with("intent_id", "I-1"), intent.CodeUnknownField},
	{"hold until without offset", holdDoc.with("until", "2026-11-27T10:00:00"), intent.CodeInvalidFormat},
	{"hold until a date", holdDoc.with("until", "2026-11-27"), intent.CodeInvalidFormat},
	{"hold until empty", holdDoc.with("until", ""), intent.CodeInvalidFormat},
	{"hold until a number", holdDoc.with("until", 1764208800), intent.CodeWrongType},
	{"hold_id too long", holdDoc.with("hold_id", strings.Repeat("h", 65)), intent.CodeInvalidFormat},
	{"debt_id with a space", holdDoc.with("debt_id", "L 1"), intent.CodeInvalidFormat},
	{"release without hold_id", releaseDoc.with("hold_id", deleted), intent.CodeRequired},
	{"release with reason", releaseDoc.with("reason", "paid"), intent.CodeUnknownField},
	{"actor with a space", releaseDoc.with("actor", "Zhang San"), intent.CodeInvalidFormat},
	{"unknown field", cancelDoc.with("colour", "red"), intent.CodeUnknownField},
	{"field in another case", cancelDoc.with("Intent_ID", "I-2"), intent.CodeUnknownField},
	{"nested object", cancelDoc.with("reason", map[string]any{"code": "paid"}), intent.CodeWrongType},
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile(schemaFile)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return sch
}

func validateSchema(sch *jsonschema.Schema, b []byte) error {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return sch.Validate(inst)
}

// The schema in docs/ and Decode agree on every case; Decode gives the
// expected code.
func TestSchemaAgreesWithDecode(t *testing.T) {
	sch := compileSchema(t)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			valid := tt.code == ""
			if err := validateSchema(sch, b); (err == nil) != valid {
				t.Errorf("schema: want valid=%v, got %v", valid, err)
			}
			_, err = Decode(b)
			if (err == nil) != valid {
				t.Fatalf("Decode: want valid=%v, got %v", valid, err)
			}
			var ce *Error
			if !valid && (!errors.As(err, &ce) || ce.Code() != tt.code) {
				t.Errorf("Decode: %v, want code %s", err, tt.code)
			}
		})
	}
}

// What the schema cannot check: it accepts these, Decode refuses them.
func TestSchemaLimits(t *testing.T) {
	sch := compileSchema(t)
	ok, _ := json.Marshal(cancelDoc)
	for _, tt := range []struct {
		name, code string
		b          []byte
	}{
		{"duplicate key", intent.CodeDuplicateField, bytes.Replace(ok, []byte(`"reason":"paid"`), []byte(`"reason":"paid","reason":"other"`), 1)},
		{"too large", intent.CodeTooLarge, bytes.Replace(ok, []byte(`"reason":"paid"`), []byte(`"reason":"paid"`+strings.Repeat(" ", MaxSize)), 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := validateSchema(sch, tt.b); err != nil {
				t.Errorf("schema rejects it: %v", err)
			}
			_, err := Decode(tt.b)
			var ce *Error
			if !errors.As(err, &ce) || ce.Code() != tt.code {
				t.Errorf("Decode: %v, want code %s", err, tt.code)
			}
		})
	}
}

// Values that are no JSON object at all.
func TestDecodeMalformed(t *testing.T) {
	for _, tt := range []struct {
		name, code string
		b          []byte
	}{
		{"tombstone", intent.CodeEmpty, nil},
		{"spaces", intent.CodeEmpty, []byte("  \n")},
		{"array", intent.CodeWrongType, []byte(`[1]`)},
		{"string", intent.CodeWrongType, []byte(`"cancel"`)},
		{"truncated", intent.CodeMalformedJSON, []byte(`{"type":"cancel","command_id":"c`)},
		{"two objects", intent.CodeMalformedJSON, []byte(`{"type":"release"} {}`)},
		{"invalid UTF-8", intent.CodeInvalidUTF8, []byte("{\"note\":\"\xff\"}")},
		{"lone surrogate", intent.CodeInvalidUTF8, []byte(`{"note":"\ud800"}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.b)
			var ce *Error
			if !errors.As(err, &ce) || ce.Code() != tt.code {
				t.Errorf("Decode: %v, want code %s", err, tt.code)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("the reason breaks a line: %q", err)
			}
		})
	}
}

// The schema's examples are valid commands; a hold's derived id is stable
// and depends on the debtor and the command id.
func TestSchemaExamples(t *testing.T) {
	sch := compileSchema(t)
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Examples) < 4 {
		t.Fatalf("examples: %v", err)
	}
	for i, ex := range s.Examples {
		if err := validateSchema(sch, ex); err != nil {
			t.Errorf("example %d: schema: %v", i, err)
		}
		if _, err := Decode(ex); err != nil {
			t.Errorf("example %d: %v", i, err)
		}
	}
	a := Command{DebtorID: "D-1", CommandID: "c-1"}
	b := Command{DebtorID: "D-2", CommandID: "c-1"}
	if a.HoldIDOf() != a.HoldIDOf() || a.HoldIDOf() == b.HoldIDOf() || len(a.HoldIDOf()) != 14 {
		t.Errorf("derived hold ids %s %s", a.HoldIDOf(), b.HoldIDOf())
	}
	if c := (Command{HoldID: "PTP-1", CommandID: "c"}); c.HoldIDOf() != "PTP-1" {
		t.Errorf("given hold id not kept: %s", c.HoldIDOf())
	}
}
