// Package optout owns a debtor's wish not to be contacted: the opt-out
// record, where it comes from, and how it is kept — first on the compacted
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

// OptOut is one debtor's opt-out of one channel (or all).
type OptOut struct {
	DebtorID string    `json:"debtor_id"`
	Channel  string    `json:"channel"` // sms, voice, email, wechat or all
	Source   string    `json:"source"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Key is the record's key on reminders.optouts.
func (o OptOut) Key() string { return o.DebtorID + "/" + o.Channel }

// Publisher writes records to Kafka and returns once they are acked.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Hot is the copy the gate reads (the Redis store).
type Hot interface {
	SetOptOut(ctx context.Context, debtorID, channel string, value []byte) error
}

// Recorder records opt-outs durably, then hot.
type Recorder struct {
	Topic string
	Pub   Publisher
	Hot   Hot
}

// Record writes o to the topic (acked) and then to Redis; it returns only
// after both.
func (r *Recorder) Record(ctx context.Context, o OptOut) error {
	if o.DebtorID == "" || o.Channel == "" {
		return errors.New("optout: debtor and channel are required")
	}
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := r.Pub.WriteMessages(ctx, kafka.Message{Topic: r.Topic, Key: []byte(o.Key()), Value: b}); err != nil {
		return fmt.Errorf("optout: write to %s: %w", r.Topic, err)
	}
	if err := r.Hot.SetOptOut(ctx, o.DebtorID, o.Channel, b); err != nil {
		return fmt.Errorf("optout: redis: %w", err)
	}
	return nil
}
