package control

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contactd/dispatcher/pkg/intent"
)

// Command types.
const (
	TypeCancel  = "cancel"
	TypeHold    = "hold"
	TypeRelease = "release"
)

// Command is one command on reminders.control (docs/control.schema.json).
// Optional strings that are absent, null or empty mean the same: not given.
type Command struct {
	Type string `json:"type"`
	// CommandID is the producer's id of the command (the payment event's
	// id, say): a command id is applied once, however often it is
	// delivered. A hold without hold_id takes its id from it.
	CommandID string `json:"command_id"`
	DebtorID  string `json:"debtor_id"`
	IntentID  string `json:"intent_id,omitempty"` // cancel
	DebtID    string `json:"debt_id,omitempty"`   // hold: one debt only
	HoldID    string `json:"hold_id,omitempty"`   // hold (optional), release
	Reason    string `json:"reason,omitempty"`    // cancel, hold
	Note      string `json:"note,omitempty"`      // cancel
	// Until: a hold with it pauses until then; without, it cancels until
	// released.
	Until *time.Time `json:"until,omitempty"`
	// Actor names who gave the command, for the timeline and the hold.
	Actor string `json:"actor,omitempty"`
}

// MaxSize is the largest command value accepted.
const MaxSize = 4096

// Codes of a command's errors beyond the intent's (intent.Code*).
const (
	CodeKeyMismatch = "key_mismatch" // the record's key is not its debtor_id
	CodeUnknownHold = "unknown_hold" // release of a hold the debtor does not have
	CodeIDConflict  = "id_conflict"  // cancel of another debtor's intent
)

// Error is the error of a command that cannot be applied as given: it
// belongs in the DLQ. Fields are as an intent's.
type Error struct {
	Fields []intent.FieldError
}

// Code is the first field's code, the DLQ record's code header.
func (e *Error) Code() string {
	if len(e.Fields) == 0 {
		return "invalid"
	}
	return e.Fields[0].Code
}

// Error is one line of at most about 1 KiB: it travels as a header.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid command")
	for i, f := range e.Fields {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if f.Field != "" {
			b.WriteString(f.Field + ": ")
		}
		b.WriteString(f.Message)
		if b.Len() > 1000 {
			fmt.Fprintf(&b, "; and %d more", len(e.Fields)-i-1)
			break
		}
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return '?'
		}
		return r
	}, b.String())
}

func invalid(field, code, msg string) *Error {
	return &Error{Fields: []intent.FieldError{{Field: field, Code: code, Message: msg}}}
}

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	holdIDRule   = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	actorPattern = regexp.MustCompile(`^[A-Za-z0-9._:@/-]{1,128}$`)
	wordPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// fields are the command's JSON fields, by type: which each may carry.
var fields = map[string][]string{
	"type": nil, "command_id": nil, "debtor_id": nil, "actor": nil,
	"intent_id": {TypeCancel}, "note": {TypeCancel},
	"reason":  {TypeCancel, TypeHold},
	"debt_id": {TypeHold}, "until": {TypeHold},
	"hold_id": {TypeHold, TypeRelease},
}

// Decode parses and validates one command. Like intent.Decode it refuses
// values over MaxSize, invalid UTF-8, anything but one JSON object, unknown
// fields, field names in another case and duplicate keys; null is absent.
// Every error is an *Error; with a command that decoded but breaks a rule,
// the command as read comes with it.
func Decode(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxSize {
		return c, invalid("", intent.CodeTooLarge, fmt.Sprintf("value is %d bytes, limit is %d", len(b), MaxSize))
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return c, invalid("", intent.CodeEmpty, "value is empty")
	}
	if !utf8.Valid(b) || intent.LoneSurrogate(b) >= 0 {
		return c, invalid("", intent.CodeInvalidUTF8, "value is not valid UTF-8")
	}
	raw, err := object(b)
	if err != nil {
		return c, err
	}
	str := func(name string, dst *string) *Error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if json.Unmarshal(v, dst) != nil {
			return invalid(name, intent.CodeWrongType, "must be a string")
		}
		return nil
	}
	var until *string
	for name, dst := range map[string]*string{"type": &c.Type, "command_id": &c.CommandID, "debtor_id": &c.DebtorID,
		"intent_id": &c.IntentID, "debt_id": &c.DebtID, "hold_id": &c.HoldID, "reason": &c.Reason, "note": &c.Note, "actor": &c.Actor} {
		if err := str(name, dst); err != nil {
			return Command{}, err
		}
	}
	if v, ok := raw["until"]; ok && string(v) != "null" {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return Command{}, invalid("until", intent.CodeWrongType, "must be an RFC 3339 date-time string")
		}
		until = &s
	}
	if until != nil {
		t, err := time.Parse(time.RFC3339Nano, *until)
		if err != nil || !rfc3339.MatchString(*until) {
			return Command{}, invalid("until", intent.CodeInvalidFormat, "must be an RFC 3339 date-time such as 2026-11-27T10:00:00+08:00")
		}
		c.Until = &t
	}
	if err := c.validate(raw); err != nil {
		return c, err // what was read, for the metrics' type label
	}
	return c, nil
}

// rfc3339 is the date-time syntax of the schema: time.Parse alone accepts
// a little more (a lowercase t, offsets of 24 hours).
var rfc3339 = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`)

// object reads b as one JSON object of known, distinct, exactly spelt
// keys, returning each key's raw value.
func object(b []byte) (map[string]json.RawMessage, *Error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, invalid("", intent.CodeMalformedJSON, "malformed JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, invalid("", intent.CodeWrongType, "must be a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalid("", intent.CodeMalformedJSON, "malformed JSON")
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, invalid("", intent.CodeMalformedJSON, "malformed JSON")
		}
		if _, known := fields[key]; !known {
			return nil, invalid(fieldName(key), intent.CodeUnknownField, "unknown field")
		}
		if _, dup := out[key]; dup {
			return nil, invalid(key, intent.CodeDuplicateField, "field appears more than once")
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalid("", intent.CodeMalformedJSON, "malformed JSON: unexpected end of input")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid("", intent.CodeMalformedJSON, "trailing data after the object")
	}
	return out, nil
}

// fieldName names an unknown key in an error without repeating text that
// could be personal data or break a line.
func fieldName(key string) string {
	if len(key) <= 64 && wordPattern.MatchString(key) {
		return key
	}
	return "[?]"
}

func (c Command) validate(raw map[string]json.RawMessage) *Error {
	var errs []intent.FieldError
	add := func(field, code, msg string) {
		errs = append(errs, intent.FieldError{Field: field, Code: code, Message: msg})
	}
	id := func(field, v string, required bool, re *regexp.Regexp, rule string) {
		switch {
		case v == "" && required:
			add(field, intent.CodeRequired, "is required")
		case v != "" && !re.MatchString(v):
			add(field, intent.CodeInvalidFormat, rule)
		}
	}
	switch c.Type {
	case TypeCancel, TypeHold, TypeRelease:
	case "":
		return invalid("type", intent.CodeRequired, "is required: cancel, hold or release")
	default:
		return invalid("type", intent.CodeUnknown, "must be cancel, hold or release")
	}
	for name := range raw {
		if types := fields[name]; types != nil && !slices.Contains(types, c.Type) {
			add(name, intent.CodeUnknownField, "not a field of a "+c.Type+" command")
		}
	}
	const idRule = "1-128 of A-Z a-z 0-9 . _ : -"
	id("command_id", c.CommandID, true, idPattern, idRule)
	id("debtor_id", c.DebtorID, true, idPattern, idRule)
	id("actor", c.Actor, false, actorPattern, "1-128 of A-Z a-z 0-9 . _ : @ / -")
	switch c.Type {
	case TypeCancel:
		id("intent_id", c.IntentID, true, idPattern, idRule)
		reason(add, c.Reason, CancelReasons)
		if utf8.RuneCountInString(c.Note) > 256 {
			add("note", intent.CodeTooLong, "must be at most 256 characters")
		} else if strings.IndexFunc(c.Note, unicode.IsControl) >= 0 {
			add("note", intent.CodeInvalidFormat, "must be one line without control characters")
		}
	case TypeHold:
		id("debt_id", c.DebtID, false, idPattern, idRule)
		id("hold_id", c.HoldID, false, holdIDRule, "1-64 of A-Z a-z 0-9 . _ : -")
		reason(add, c.Reason, HoldReasons)
	case TypeRelease:
		id("hold_id", c.HoldID, true, holdIDRule, "1-64 of A-Z a-z 0-9 . _ : -")
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b intent.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return &Error{Fields: errs}
	}
	return nil
}

func reason(add func(field, code, msg string), v string, allowed []string) {
	switch {
	case v == "":
		add("reason", intent.CodeRequired, "is required: one of "+strings.Join(allowed, ", "))
	case !slices.Contains(allowed, v):
		add("reason", intent.CodeInvalidFormat, "must be one of "+strings.Join(allowed, ", "))
	}
}

// HoldIDOf is the id of the hold a hold command places: its hold_id, or
// one derived from the debtor and the command id, so a redelivered command
// places the same hold, never a second.
func (c Command) HoldIDOf() string {
	if c.HoldID != "" {
		return c.HoldID
	}
	sum := sha256.Sum256([]byte(c.DebtorID + "|" + c.CommandID))
	return "H-" + hex.EncodeToString(sum[:6])
}

// ActorOf names the command's actor in timelines and holds:
// "control:<actor>", or "control" without one.
func (c Command) ActorOf() string {
	if c.Actor == "" {
		return string(ViaKafka)
	}
	return string(ViaKafka) + ":" + c.Actor
}
