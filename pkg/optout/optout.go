// Package optout owns a debtor's wish not to be contacted — or a phone
// number's, for an SMS keyword reply: the opt-out record, where it comes
// from, and how it is kept — first on the compacted
// topic reminders.optouts (the durable copy), then in Redis (the copy the
// gate reads). An opt-out always wins over any intent not yet past the gate.
package optout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Sources of an opt-out.
const (
	SourceLink        = "link"         // the debtor's opt-out link or one-click unsubscribe
	SourceSMSKeyword  = "sms_keyword"  // a reply such as TD, 退订 or STOP
	SourceProvider    = "provider"     // the provider reports the recipient unsubscribed
	SourceBankRequest = "bank_request" // entered by the bank's staff
)

// ChannelAll opts out of every channel.
const ChannelAll = "all"

// Legal do-not-contact states set by the bank: each stops every channel
// until removed. As an OptOut's Channel they are written "dnc:<state>".
var DoNotContact = []string{"cease_and_desist", "attorney_represented", "dispute_open"}

// DNCPrefix marks a do-not-contact state in an OptOut's Channel.
const DNCPrefix = "dnc:"

// OptOut is one debtor's opt-out of one channel (or all), or one number's
// opt-out of a channel. A record has either DebtorID or Number.
type OptOut struct {
	DebtorID string `json:"debtor_id,omitempty"`
	// Number is the keyed digest of an E.164 number (never the number) on
	// a number's own opt-out: an SMS keyword reply from it stops SMS to it
	// whichever debtor it belongs to, until a START from it.
	Number  string    `json:"number,omitempty"`
	Channel string    `json:"channel"` // sms, voice, email, wechat or all
	Source  string    `json:"source"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
	// Removed: the debtor opted back in (START) or the bank lifted it.
	Removed bool `json:"removed,omitempty"`
	// Actor is who made the change: "debtor" (the link, an SMS reply), or
	// "api-key:<id>" for a change through the API (the key's id, never the
	// key). Empty on records written before actors were recorded.
	Actor string `json:"actor,omitempty"`
	// A hold (Channel "hold:<id>"): the debt it is on ("" for every debt
	// of the debtor) and, for a pause, its end in unix ms (0: a hold that
	// cancels until it is lifted). Holds ride the opt-out topic and hash:
	// durable and rebuilt the same way, read by the gate in the same call.
	DebtID  string `json:"debt_id,omitempty"`
	UntilMS int64  `json:"until_ms,omitempty"`
}

// HoldPrefix starts the Channel of a hold record: "hold:<id>".
const HoldPrefix = "hold:"

// ByDebtor reports whether the debtor made this opt-out themself (the link,
// an SMS reply, or a provider reporting their unsubscribe): lifting one
// needs more than the bank's say-so.
func (o OptOut) ByDebtor() bool {
	switch o.Source {
	case SourceLink, SourceSMSKeyword, SourceProvider:
		return true
	}
	return false
}

// ActorDebtor is the Actor of a change the debtor made.
const ActorDebtor = "debtor"

// NumberKeyPrefix starts the key of a number's opt-out on reminders.optouts:
// "number:<digest>/<channel>". A debtor id never contains '/', and keys of
// debtors' records are "<debtor_id>/<channel>".
const NumberKeyPrefix = "number:"

// Key is the record's key on reminders.optouts.
func (o OptOut) Key() string {
	if o.Number != "" {
		return NumberKeyPrefix + o.Number + "/" + o.Channel
	}
	return o.DebtorID + "/" + o.Channel
}

// Check reports whether o can be recorded: a channel, and either a debtor
// or a number (not both).
func (o OptOut) Check() error {
	switch {
	case o.Channel == "":
		return errors.New("optout: channel is required")
	case o.DebtorID == "" && o.Number == "":
		return errors.New("optout: debtor or number is required")
	case o.DebtorID != "" && o.Number != "":
		return errors.New("optout: a record is for a debtor or for a number, not both")
	}
	return nil
}

// Publisher writes records to Kafka and returns once they are acked.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Hot is the copy the gate reads (the Redis store).
type Hot interface {
	SetOptOut(ctx context.Context, debtorID, field string, value []byte) error
	RemoveOptOut(ctx context.Context, debtorID, field string) error
	// A number's opt-outs, keyed by the number's digest; field: the channel.
	SetNumberOptOut(ctx context.Context, digest, channel string, value []byte) error
	RemoveNumberOptOut(ctx context.Context, digest, channel string) error
}

// Recorder records opt-outs durably, then hot.
type Recorder struct {
	Topic string
	Pub   Publisher
	Hot   Hot
}

// Record writes o (an opt-out, or with Removed its lifting) to the topic,
// acked by all in-sync replicas, and then to Redis; it returns only after
// both. Every change is a record on the topic.
func (r *Recorder) Record(ctx context.Context, o OptOut) error {
	if err := o.Check(); err != nil {
		return err
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := r.Pub.WriteMessages(ctx, kafka.Message{Topic: r.Topic, Key: []byte(o.Key()), Value: b}); err != nil {
		return fmt.Errorf("optout: write to %s: %w", r.Topic, err)
	}
	if err := Apply(ctx, r.Hot, o, b); err != nil {
		return fmt.Errorf("optout: redis: %w", err)
	}
	return nil
}

// Apply puts one opt-out record into the hot copy: how Record does it, and
// how the hot copy is rebuilt from the topic. A number's record goes to the
// number's opt-outs, a debtor's to the debtor's.
func Apply(ctx context.Context, hot Hot, o OptOut, raw []byte) error {
	if err := o.Check(); err != nil {
		return err
	}
	if o.Number != "" {
		if o.Removed {
			return hot.RemoveNumberOptOut(ctx, o.Number, o.Channel)
		}
		return hot.SetNumberOptOut(ctx, o.Number, o.Channel, raw)
	}
	if o.Removed {
		return hot.RemoveOptOut(ctx, o.DebtorID, o.Channel)
	}
	return hot.SetOptOut(ctx, o.DebtorID, o.Channel, raw)
}
