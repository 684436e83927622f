package intent

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readExample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/intent.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// equalIntents compares intents, times by instant and offset.
func equalIntents(a, b Intent) bool {
	if !equalTime(a.NotBefore, b.NotBefore) || !equalTime(a.ExpiresAt, b.ExpiresAt) {
		return false
	}
	a.NotBefore, a.ExpiresAt, b.NotBefore, b.ExpiresAt = nil, nil, nil, nil
	return reflect.DeepEqual(a, b)
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	_, ao := a.Zone()
	_, bo := b.Zone()
	return a.Equal(*b) && ao == bo
}

func TestDecodeExample(t *testing.T) {
	got, err := Decode(readExample(t))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := validIntent(); !equalIntents(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if err := got.Validate(templates); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(Intent) bool
	}{
		{"surrounding whitespace", " \n\t{\"id\":\"a\"}\r\n ", func(in Intent) bool { return in.ID == "a" }},
		{"null means absent", `{"id":"a","debt_id":null,"params":null,"not_before":null,"fallback":null,"to":null}`,
			func(in Intent) bool { return in.ID == "a" && in.NotBefore == nil && in.Params == nil }},
		{"empty params become nil", `{"params":{}}`, func(in Intent) bool { return in.Params == nil }},
		{"escaped field name", `{"\u0069d":"a"}`, func(in Intent) bool { return in.ID == "a" }},
		{"time in UTC", `{"expires_at":"2026-11-30T00:00:00Z"}`,
			func(in Intent) bool { return in.ExpiresAt.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) }},
		{"time with fraction", `{"not_before":"2026-11-23T09:00:00.5+08:00"}`,
			func(in Intent) bool { return in.NotBefore.Nanosecond() == 500_000_000 }},
		{"same key in different objects", `{"params":{"id":"x"},"id":"a"}`, func(in Intent) bool { return in.ID == "a" && in.Params["id"] == "x" }},
		{"brackets inside strings", `{"id":"a","params":{"x":"{[[[[[[[[[[[[[[[[[[[[\"{"}}`, func(in Intent) bool { return in.ID == "a" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := Decode([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !tt.check(in) {
				t.Errorf("decoded %+v", in)
			}
		})
	}
}

// TestDecodeRejects has one row per decoding rule, with the exact field and
// code expected.
func TestDecodeRejects(t *testing.T) {
	nested := func(n int) string { // {"params":{"a": + n-2 arrays
		return `{"params":{"a":` + strings.Repeat("[", n-2) + strings.Repeat("]", n-2) + `}}`
	}
	tests := []struct {
		name  string
		doc   string
		field string
		code  string
	}{
		{"over MaxSize", `{"id":"` + strings.Repeat("a", MaxSize) + `"}`, "", CodeTooLarge},
		{"empty", ``, "", CodeEmpty},
		{"only whitespace", " \n\t", "", CodeEmpty},
		{"invalid UTF-8", `{"id":"a","params":{"name":"` + "\xe5\xbc" + `"}}`, "", CodeInvalidUTF8},
		{"an array", `[{"id":"a"}]`, "", CodeWrongType},
		{"null", `null`, "", CodeWrongType},
		{"a string", `"id"`, "", CodeWrongType},
		{"truncated", `{"id":"a","channels":["sms"`, "", CodeMalformedJSON},
		{"syntax", `{"id":"a",}`, "", CodeMalformedJSON},
		{"not JSON after the brace", `{id:"a"}`, "", CodeMalformedJSON},
		{"trailing data", `{"id":"a"} x`, "", CodeMalformedJSON},
		{"two objects", `{"id":"a"}{"id":"b"}`, "", CodeMalformedJSON},
		{"bad escape", `{"id":"\x"}`, "", CodeMalformedJSON},
		{"17 levels", nested(17), "", CodeTooDeep},
		{"16 levels are not too deep", nested(16), "params", CodeWrongType},
		{"deep and truncated", `{"a":` + strings.Repeat("[", 20000), "", CodeTooDeep},
		{"unknown field", `{"id":"a","colour":"red"}`, "colour", CodeUnknownField},
		{"unknown field in to", `{"to":{"phone":"+8613800138000","fax":"x"}}`, "to.fax", CodeUnknownField},
		{"field name in another case", `{"ID":"a"}`, "ID", CodeUnknownField},
		{"field name in another case in to", `{"to":{"Phone":"+8613800138000"}}`, "to.Phone", CodeUnknownField},
		{"unknown field with an odd name", `{"a b":1}`, "[?]", CodeUnknownField},
		{"duplicate field", `{"id":"a","id":"b"}`, "id", CodeDuplicateField},
		{"duplicate field by escape", `{"id":"a","\u0069d":"b"}`, "id", CodeDuplicateField},
		{"duplicate field in to", `{"to":{"phone":"+8613800138000","phone":"+8613800138001"}}`, "to.phone", CodeDuplicateField},
		{"duplicate param", `{"params":{"name":"a","amount":"1","name":"b"}}`, "params.name", CodeDuplicateField},
		{"duplicate param among many", `{"params":{"a":"","b":"","c":"","d":"","e":"","f":"","g":"","h":"","i":"","j":"","k":"","e":""}}`,
			"params.e", CodeDuplicateField},
		{"id not a string", `{"id":42}`, "id", CodeWrongType},
		{"channels not an array", `{"channels":"sms"}`, "channels", CodeWrongType},
		{"channels not strings", `{"channels":[1]}`, "channels", CodeWrongType},
		{"fallback not a boolean", `{"fallback":"yes"}`, "fallback", CodeWrongType},
		{"to not an object", `{"to":"+8613800138000"}`, "to", CodeWrongType},
		{"phone not a string", `{"to":{"phone":8613800138000}}`, "to.phone", CodeWrongType},
		{"params not an object", `{"params":["a"]}`, "params", CodeWrongType},
		{"param not a string", `{"params":{"amount":1234}}`, "params", CodeWrongType},
		{"time not a string", `{"not_before":1732323600}`, "not_before", CodeWrongType},
		{"time not RFC 3339", `{"not_before":"2026-11-23 09:00:00"}`, "not_before", CodeInvalidFormat},
		{"time empty", `{"expires_at":""}`, "expires_at", CodeInvalidFormat},
		{"time offset out of range", `{"expires_at":"2026-11-23T09:00:00+24:00"}`, "expires_at", CodeInvalidFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := Decode([]byte(tt.doc))
			got := fieldErrors(t, err)
			if len(got) != 1 || got[0].Field != tt.field || got[0].Code != tt.code {
				t.Fatalf("got %+v, want one error %q/%s", got, tt.field, tt.code)
			}
			if !reflect.DeepEqual(in, Intent{}) {
				t.Errorf("intent %+v returned with the error", in)
			}
		})
	}
}

func TestDecodeTooLargeSaysSizeAndLimit(t *testing.T) {
	_, err := Decode(make([]byte, MaxSize+1))
	if msg := err.Error(); !strings.Contains(msg, "65537") || !strings.Contains(msg, "65536") {
		t.Errorf("message %q lacks size or limit", msg)
	}
}

// TestDecodeHostileInputIsCheap checks that a huge or deeply nested value is
// refused before encoding/json allocates for it.
func TestDecodeHostileInputIsCheap(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
	}{
		{"10 MB", []byte(`{"id":"` + strings.Repeat("a", 10<<20) + `"}`)},
		{"deep", []byte(`{"a":` + strings.Repeat("[", MaxSize-10) + `}`)},
		{"deep objects", []byte(`{"a":` + strings.Repeat(`{"a":`, (MaxSize-10)/5) + `}`)},
	}
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(10, func() {
				if _, err := Decode(tt.doc); err == nil {
					t.Fatal("accepted")
				}
			})
			if allocs > 5 {
				t.Errorf("%v allocations", allocs)
			}
		})
	}
}

func BenchmarkDecodeValidate(b *testing.B) {
	doc := readExample(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		in, err := Decode(doc)
		if err != nil {
			b.Fatal(err)
		}
		if err := in.Validate(templates); err != nil {
			b.Fatal(err)
		}
	}
}
