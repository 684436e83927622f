package optout_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/optout"
)

// hotCopy is a Hot that keeps the calls it got as "op owner/field=value".
type hotCopy struct{ calls []string }

func (h *hotCopy) SetOptOut(_ context.Context, debtorID, field string, v []byte) error {
	h.calls = append(h.calls, "set debtor "+debtorID+"/"+field+"="+string(v))
	return nil
}

func (h *hotCopy) RemoveOptOut(_ context.Context, debtorID, field string) error {
	h.calls = append(h.calls, "remove debtor "+debtorID+"/"+field)
	return nil
}

func (h *hotCopy) SetNumberOptOut(_ context.Context, digest, channel string, v []byte) error {
	h.calls = append(h.calls, "set number "+digest+"/"+channel+"="+string(v))
	return nil
}

func (h *hotCopy) RemoveNumberOptOut(_ context.Context, digest, channel string) error {
	h.calls = append(h.calls, "remove number "+digest+"/"+channel)
	return nil
}

type topic struct{ msgs []kafka.Message }

func (p *topic) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    optout.OptOut
		want string
	}{
		{"a debtor's channel", optout.OptOut{DebtorID: "D-1", Channel: "sms"}, "D-1/sms"},
		{"a debtor's legal state", optout.OptOut{DebtorID: "D-1", Channel: "dnc:dispute_open"}, "D-1/dnc:dispute_open"},
		{"a number's SMS", optout.OptOut{Number: "0a1b2c", Channel: "sms"}, "number:0a1b2c/sms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.o.Key(); got != tc.want {
				t.Errorf("Key() = %q, want %q", got, tc.want)
			}
		})
	}
}

// Apply puts a number's record in the number's opt-outs and a debtor's in
// the debtor's; a removal removes from the same place. Records that are
// for neither (or both) are refused, by Apply and by Record.
func TestApplyRoutes(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		o    optout.OptOut
		want string // the call, "" for an error
	}{
		{"a number's opt-out", optout.OptOut{Number: "0a1b", Channel: "sms"}, "set number 0a1b/sms=RAW"},
		{"a number's START", optout.OptOut{Number: "0a1b", Channel: "sms", Removed: true}, "remove number 0a1b/sms"},
		{"a debtor's opt-out", optout.OptOut{DebtorID: "D-1", Channel: "sms"}, "set debtor D-1/sms=RAW"},
		{"a debtor's lifting", optout.OptOut{DebtorID: "D-1", Channel: "email", Removed: true}, "remove debtor D-1/email"},
		{"neither debtor nor number", optout.OptOut{Channel: "sms"}, ""},
		{"both", optout.OptOut{DebtorID: "D-1", Number: "0a1b", Channel: "sms"}, ""},
		{"no channel", optout.OptOut{Number: "0a1b"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hot := &hotCopy{}
			err := optout.Apply(ctx, hot, tc.o, []byte("RAW"))
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("applied: %v", hot.calls)
			case tc.want == "" && len(hot.calls) != 0:
				t.Errorf("refused (%v) but called %v", err, hot.calls)
			case tc.want != "" && (err != nil || len(hot.calls) != 1 || hot.calls[0] != tc.want):
				t.Errorf("calls %v, err %v; want [%s]", hot.calls, err, tc.want)
			}
			pub, hot2 := &topic{}, &hotCopy{}
			rec := &optout.Recorder{Topic: "reminders.optouts", Pub: pub, Hot: hot2}
			err = rec.Record(ctx, tc.o)
			if tc.want == "" {
				if err == nil || len(pub.msgs) != 0 || len(hot2.calls) != 0 {
					t.Errorf("Record: %v, %d published, calls %v; want refused", err, len(pub.msgs), hot2.calls)
				}
				return
			}
			if err != nil || len(pub.msgs) != 1 || string(pub.msgs[0].Key) != tc.o.Key() || len(hot2.calls) != 1 {
				t.Fatalf("Record: %v, published %v, calls %v", err, pub.msgs, hot2.calls)
			}
			// The hot copy gets the bytes that went to the topic.
			if want := strings.Replace(tc.want, "RAW", string(pub.msgs[0].Value), 1); hot2.calls[0] != want {
				t.Errorf("Record: call %s, want %s", hot2.calls[0], want)
			}
		})
	}
}

// A number's record carries the number's digest and no debtor_id; a
// debtor's record no number.
func TestNumberRecordJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	b, _ := json.Marshal(optout.OptOut{Number: "0a1b", Channel: "sms", Source: optout.SourceSMSKeyword, At: at})
	if got, want := string(b), `{"number":"0a1b","channel":"sms","source":"sms_keyword","at":"2026-11-23T03:00:00Z"}`; got != want {
		t.Errorf("number record %s, want %s", got, want)
	}
	b, _ = json.Marshal(optout.OptOut{DebtorID: "D-1", Channel: "sms", Source: optout.SourceLink, At: at})
	if got, want := string(b), `{"debtor_id":"D-1","channel":"sms","source":"link","at":"2026-11-23T03:00:00Z"}`; got != want {
		t.Errorf("debtor record %s, want %s", got, want)
	}
}
