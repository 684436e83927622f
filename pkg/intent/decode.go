package intent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of JSON objects and arrays Decode accepts.
// A valid intent is two levels deep; the limit only bounds hostile input.
const MaxDepth = 16

// Codes of a FieldError. They are stable: callers, dashboards and producers
// match on them.
const (
	// Decoding.
	CodeEmpty          = "empty"           // no value at all (e.g. a tombstone)
	CodeTooLarge       = "too_large"       // over MaxSize
	CodeInvalidUTF8    = "invalid_utf8"    // bytes or a string that are not UTF-8
	CodeMalformedJSON  = "malformed_json"  // not JSON, truncated, or trailing data
	CodeTooDeep        = "too_deep"        // nesting over MaxDepth
	CodeWrongType      = "wrong_type"      // a JSON type other than the field's
	CodeUnknownField   = "unknown_field"   // a field the intent does not have
	CodeDuplicateField = "duplicate_field" // the same object key twice

	// Validation.
	CodeRequired      = "required"       // missing or empty
	CodeTooLong       = "too_long"       // a string over its length limit
	CodeTooMany       = "too_many"       // a list or map over its size limit
	CodeInvalidFormat = "invalid_format" // wrong characters or syntax
	CodeUnknown       = "unknown"        // not a known template, locale or channel
	CodeUnsupported   = "unsupported"    // known, but not offered by the template
	CodeDuplicate     = "duplicate"      // a channel listed twice
	CodeMissingParam  = "missing_param"  // a param the template needs is missing or empty
	CodeOutOfOrder    = "out_of_order"   // expires_at not after not_before
)

// FieldError is one problem with one field. Field is the JSON path
// ("to.phone", "channels[2]", "params.amount"), or "" for the value as a
// whole. Message describes the rule; it never repeats the rejected value.
type FieldError struct {
	Field   string `json:"field"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error is the error of an intent that is invalid: it cannot be decoded or it
// breaks a rule. Retrying it cannot help; it belongs in the dead-letter queue
// or in a 400 response.
type Error struct {
	Fields []FieldError
}

// maxErrorLen bounds Error's message, which travels as a Kafka header.
const maxErrorLen = 1024

// Error returns a single-line summary of at most 1 KiB, such as
// `invalid intent: template: unknown template "x"; to.phone: not a valid E.164 phone number`.
func (e *Error) Error() string {
	const prefix = "invalid intent"
	const reserve = 24 // room for "; and 9999 more"
	var b strings.Builder
	b.WriteString(prefix)
	for i, f := range e.Fields {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		part := f.Message
		if f.Field != "" {
			part = f.Field + ": " + f.Message
		}
		part = oneLine(part)
		if b.Len()+len(sep)+len(part) > maxErrorLen-reserve {
			if i == 0 {
				b.WriteString(sep)
				b.WriteString(truncate(part, maxErrorLen-reserve-b.Len()-len("…")))
				b.WriteString("…")
				if n := len(e.Fields) - 1; n > 0 {
					fmt.Fprintf(&b, "; and %d more", n)
				}
			} else {
				fmt.Fprintf(&b, "; and %d more", len(e.Fields)-i)
			}
			break
		}
		b.WriteString(sep)
		b.WriteString(part)
	}
	return b.String()
}

// IsInvalid reports whether err is, or wraps, an *Error.
func IsInvalid(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

func invalid(field, code, msg string) *Error {
	return &Error{Fields: []FieldError{{Field: field, Code: code, Message: msg}}}
}

// oneLine replaces anything that could break a header or a log line.
func oneLine(s string) string {
	if strings.IndexFunc(s, breaksLine) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if breaksLine(r) {
			return '?'
		}
		return r
	}, s)
}

func breaksLine(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// wire is what Decode unmarshals into: the intent, with the times as strings
// so a bad time is reported against its field (encoding/json gives errors
// from time.Time's own decoder no path). The outer fields shadow the embedded
// ones of the same JSON name.
type wire struct {
	Intent
	NotBefore *string `json:"not_before"`
	ExpiresAt *string `json:"expires_at"`
}

// Decode parses one encoded intent. It does not validate it: call Validate.
// Every error it returns is an *Error with a single FieldError.
//
// Decode is stricter than encoding/json: it refuses values over MaxSize,
// invalid UTF-8 (which encoding/json would silently replace), nesting over
// MaxDepth, anything but one JSON object, unknown fields, field names in
// another case ("ID"), and duplicate keys (which other parsers might resolve
// differently). JSON null for a field means the field is absent.
func Decode(b []byte) (Intent, error) {
	if len(b) > MaxSize {
		return Intent{}, invalid("", CodeTooLarge, fmt.Sprintf("value is %d bytes, limit is %d", len(b), MaxSize))
	}
	start := skipSpace(b, 0)
	if start == len(b) {
		return Intent{}, invalid("", CodeEmpty, "value is empty")
	}
	if !utf8.Valid(b) {
		return Intent{}, invalid("", CodeInvalidUTF8, fmt.Sprintf("value is not valid UTF-8 (byte %d)", firstInvalidUTF8(b)))
	}
	if i := LoneSurrogate(b); i >= 0 {
		return Intent{}, invalid("", CodeInvalidUTF8, fmt.Sprintf("a \\u escape at byte %d is half of a surrogate pair", i))
	}
	if b[start] != '{' {
		return Intent{}, invalid("", CodeWrongType, "must be a JSON object")
	}
	keyErr, deepErr := scan(b)
	if deepErr != nil {
		return Intent{}, deepErr
	}

	var w wire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Intent{}, decodeError(err, keyErr)
	}
	if end := skipSpace(b, int(dec.InputOffset())); end != len(b) {
		return Intent{}, invalid("", CodeMalformedJSON, fmt.Sprintf("trailing data after the object (byte %d)", end))
	}
	if keyErr != nil {
		return Intent{}, keyErr
	}

	in := w.Intent
	var err *Error
	if in.NotBefore, err = parseTime("not_before", w.NotBefore); err != nil {
		return Intent{}, err
	}
	if in.ExpiresAt, err = parseTime("expires_at", w.ExpiresAt); err != nil {
		return Intent{}, err
	}
	if len(in.Params) == 0 {
		in.Params = nil // {} and absent mean the same; keep one form
	}
	return in, nil
}

// parseTime parses an RFC 3339 time. It refuses offsets of 24 hours or more,
// which time.Time accepts on input but cannot encode again.
func parseTime(field string, s *string) (*time.Time, *Error) {
	if s == nil {
		return nil, nil
	}
	var t time.Time
	if err := t.UnmarshalText([]byte(*s)); err != nil {
		return nil, invalid(field, CodeInvalidFormat, "must be an RFC 3339 date-time such as 2026-11-23T09:00:00+08:00")
	}
	if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return nil, invalid(field, CodeInvalidFormat, "time zone offset must be within ±23:59")
	}
	return &t, nil
}

func decodeError(err error, keyErr *Error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return invalid("", CodeMalformedJSON, fmt.Sprintf("malformed JSON at byte %d: %s", syn.Offset, syn.Error()))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return invalid("", CodeMalformedJSON, "malformed JSON: unexpected end of input")
	case keyErr != nil:
		// A misspelt or repeated key explains a type error better than the
		// type error does.
		return keyErr
	case errors.As(err, &typ):
		field := strings.TrimPrefix(typ.Field, "Intent.")
		return invalid(field, CodeWrongType, typeRule(field))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		if uerr != nil {
			return invalid("", CodeUnknownField, "unknown field")
		}
		return invalid(keyPath("", name), CodeUnknownField, "unknown field")
	}
	return invalid("", CodeMalformedJSON, "cannot decode the value")
}

func typeRule(field string) string {
	switch field {
	case "channels":
		return "must be an array of strings"
	case "params":
		return "must be an object with string values"
	case "to":
		return "must be an object"
	case "fallback":
		return "must be a boolean"
	case "not_before", "expires_at":
		return "must be an RFC 3339 date-time string"
	}
	return "must be a string"
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

// Field names of Intent and Address, by JSON name, for the exact-name and
// duplicate checks of scan. Derived from the struct tags so they cannot drift.
var (
	topFields = jsonFields(reflect.TypeFor[wire]())
	toFields  = jsonFields(reflect.TypeFor[Address]())
)

func jsonFields(t reflect.Type) map[string]uint {
	m := make(map[string]uint)
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if _, ok := m[name]; !ok {
				m[name] = uint(len(m))
			}
		}
	}
	walk(t)
	if len(m) > 64 {
		panic("intent: more than 64 fields")
	}
	return m
}

// scan walks the raw bytes once, before encoding/json does. It returns at
// once if the nesting is over MaxDepth, so a hostile value costs little. It
// also reports the first key of the intent or of "to" that is not a field
// name exactly (encoding/json matches names ignoring case), and the first key
// repeated in the intent, "to" or "params". It assumes nothing about the
// syntax: encoding/json checks that, and its syntax errors take precedence.
func scan(b []byte) (keyErr, deepErr *Error) {
	const (
		kindOther = iota
		kindTop
		kindTo
		kindParams
	)
	type frame struct {
		obj       bool
		expectKey bool
		kind      int
		key       []byte // the last key read in this object
	}
	var (
		stack   [MaxDepth]frame
		depth   int
		topSeen uint64
		toSeen  uint64
		params  [][]byte
		paramSt map[string]struct{}
	)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			j, escaped := stringEnd(b, i+1)
			if depth > 0 && stack[depth-1].obj && stack[depth-1].expectKey && keyErr == nil {
				f := &stack[depth-1]
				f.expectKey = false
				key := b[i+1 : j]
				if escaped {
					// A bad escape stays raw: encoding/json reports it.
					var s string
					if json.Unmarshal(b[i:min(j+1, len(b))], &s) == nil {
						key = []byte(s)
					}
				}
				f.key = key
				switch f.kind {
				case kindTop:
					keyErr = checkKey("", key, topFields, &topSeen)
				case kindTo:
					keyErr = checkKey("to", key, toFields, &toSeen)
				case kindParams:
					dup := false
					if paramSt != nil {
						_, dup = paramSt[string(key)]
						paramSt[string(key)] = struct{}{}
					} else {
						for _, k := range params {
							if bytes.Equal(k, key) {
								dup = true
								break
							}
						}
						params = append(params, key)
						if len(params) > 8 {
							paramSt = make(map[string]struct{}, 2*len(params))
							for _, k := range params {
								paramSt[string(k)] = struct{}{}
							}
						}
					}
					if dup {
						keyErr = invalid(keyPath("params", string(key)), CodeDuplicateField, "field appears more than once")
					}
				}
			} else if depth > 0 && stack[depth-1].obj {
				stack[depth-1].expectKey = false
			}
			i = j
		case '{', '[':
			if depth == MaxDepth {
				return nil, invalid("", CodeTooDeep, fmt.Sprintf("nesting deeper than %d levels", MaxDepth))
			}
			kind := kindOther
			if c == '{' {
				switch {
				case depth == 0:
					kind = kindTop
					topSeen = 0
				case depth == 1 && stack[0].kind == kindTop && string(stack[0].key) == "to":
					kind = kindTo
					toSeen = 0
				case depth == 1 && stack[0].kind == kindTop && string(stack[0].key) == "params":
					kind = kindParams
					params, paramSt = params[:0], nil
				}
			}
			stack[depth] = frame{obj: c == '{', expectKey: c == '{', kind: kind}
			depth++
		case '}', ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth > 0 && stack[depth-1].obj {
				stack[depth-1].expectKey = true
			}
		}
	}
	return keyErr, nil
}

// stringEnd returns the index of the quote closing the string whose content
// starts at i (or len(b)), and whether the string has escapes.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i, escaped
		case '\\':
			escaped = true
			i++
		}
	}
	return len(b), escaped
}

func checkKey(parent string, key []byte, fields map[string]uint, seen *uint64) *Error {
	idx, ok := fields[string(key)]
	if !ok {
		return invalid(keyPath(parent, string(key)), CodeUnknownField, "unknown field")
	}
	if *seen&(1<<idx) != 0 {
		return invalid(keyPath(parent, string(key)), CodeDuplicateField, "field appears more than once")
	}
	*seen |= 1 << idx
	return nil
}

// keyPath names an object key in a field path: parent.key for a key of
// A-Z a-z 0-9 _ - (cut to 64 bytes), parent[""] for the empty key, and
// parent[?] for any other, whose text could be personal data or break the
// line.
func keyPath(parent, key string) string {
	for i := 0; i < len(key); i++ {
		if c := key[i]; !isWordByte(c) && c != '-' {
			return parent + "[?]"
		}
	}
	switch {
	case key == "":
		return parent + `[""]`
	case len(key) > 64:
		key = key[:64] + "…"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}
