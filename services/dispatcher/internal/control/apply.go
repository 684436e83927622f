// Package control applies the commands upstream systems give about an
// intent's life — cancel one intent, hold (cancel or pause) a debtor's or a
// debt's intents, release a hold — whichever way they arrive: the HTTP API
// (httpapi's cancel and holds routes) and the Kafka topic reminders.control
// (Consumer) call the same Applier, so both have the same effects, publish
// the same records and count the same way.
//
// Every effect is in Redis, where the gate reads it in the same call as its
// decision, before the caller answers or commits: no intent passes the gate
// after an Applier call returned.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// CancelReasons are the reasons a cancellation may give.
var CancelReasons = []string{"paid", "settled", "promise_to_pay", "deceased", "bankruptcy", "sold", "other"}

// HoldReasons are the reasons a hold may give.
var HoldReasons = []string{"paid", "settled", "promise_to_pay", "deceased", "bankruptcy", "other"}

// Records reads intent records.
type Records interface {
	Get(ctx context.Context, id string) (status.Record, error)
}

// Canceler moves an intent to an end state decided without contact.
type Canceler interface {
	Claim(ctx context.Context, r store.ClaimRequest) (store.ClaimResult, error)
}

// Holds reads a debtor's holds and pending intents.
type Holds interface {
	HoldsOf(ctx context.Context, debtorID string) (map[string]string, error)
	PendingOf(ctx context.Context, debtorID string) ([]store.Pending, error)
}

// Recorder records an opt-out (a hold is one) on its topic, then in Redis.
type Recorder interface {
	Record(ctx context.Context, o optout.OptOut) error
}

// Applier applies cancellations and holds.
type Applier struct {
	Records  Records
	Canceler Canceler
	Holds    Holds
	OptOuts  Recorder
	Topics   kafkaio.Topics
	Now      func() time.Time
	// Canceled counts one intent canceled (the ops page, the metrics);
	// may be nil.
	Canceled func(reason string)
}

// Via says which way a command came: it names the claim's owner and the
// timeline entry's worker.
type Via string

// The ways a command comes.
const (
	ViaAPI   Via = "api"
	ViaKafka Via = "control"
)

// Cancel asks to cancel one intent.
type Cancel struct {
	IntentID string
	// DebtorID may be empty when the intent is known; with it a
	// cancellation can come before its intent.
	DebtorID string
	Reason   string
	Note     string // appended to the timeline's detail
	Actor    string // who asked, e.g. api-key:<id>
	Via      Via
}

// CancelOutcome is what a cancellation found.
type CancelOutcome string

// Cancel outcomes.
const (
	Canceled        CancelOutcome = "canceled"         // canceled now
	AlreadyCanceled CancelOutcome = "already_canceled" // canceled before: the same entry again
	TooLate         CancelOutcome = "too_late"         // sent or ended otherwise (State)
	InFlight        CancelOutcome = "in_flight"        // a send in flight cannot be recalled
	UnknownIntent   CancelOutcome = "unknown_intent"   // no record, and no debtor to pre-cancel it for
	OtherDebtor     CancelOutcome = "other_debtor"     // the intent is another debtor's
)

// CancelResult is a cancellation's outcome and what it must publish.
type CancelResult struct {
	Outcome  CancelOutcome
	State    status.State // the record's state when TooLate
	DebtorID string
	Entry    status.Entry // the canceled entry (Canceled, AlreadyCanceled)
	// Records are the status event that makes the cancellation durable (a
	// Redis rebuild restores it) and the tombstone that takes a deferred
	// intent off the scheduler's list: publish them before answering or
	// committing. Published again for AlreadyCanceled, in case the first
	// time never got through.
	Records []kafka.Message
}

// Cancel cancels an intent that has not been sent, in the claim script:
// atomic with any gate call on the record. An unknown id with a debtor is
// recorded canceled for that debtor, and the intent, when it comes, is
// never sent.
func (a *Applier) Cancel(ctx context.Context, c Cancel) (CancelResult, error) {
	debtor := c.DebtorID
	rec, err := a.Records.Get(ctx, c.IntentID)
	switch {
	case err == nil:
		if debtor != "" && debtor != rec.DebtorID {
			return CancelResult{Outcome: OtherDebtor}, nil
		}
		debtor = rec.DebtorID
	case errors.Is(err, store.ErrNotFound):
		if debtor == "" {
			return CancelResult{Outcome: UnknownIntent}, nil
		}
	default:
		return CancelResult{}, err
	}
	detail := "canceled by " + c.Actor
	if c.Note != "" {
		detail += ": " + c.Note
	}
	e := status.Entry{At: a.Now().UTC(), State: status.Canceled, Reason: c.Reason, Detail: detail, Worker: string(c.Via)}
	res, err := a.claimCanceled(ctx, c.IntentID, debtor, string(c.Via)+"/cancel", e)
	if err != nil {
		return CancelResult{}, err
	}
	out := CancelResult{DebtorID: debtor}
	switch res.Outcome {
	case store.Claimed:
		e.Seq = res.Seq
		out.Outcome = Canceled
		a.count(c.Reason)
	case store.Duplicate:
		if res.State != status.Canceled {
			return CancelResult{Outcome: TooLate, State: res.State, DebtorID: debtor}, nil
		}
		// Canceled already: the first cancellation's entry.
		rec, err := a.Records.Get(ctx, c.IntentID)
		if err != nil {
			return CancelResult{}, err
		}
		for _, x := range rec.Timeline {
			if x.State == status.Canceled {
				e = x
			}
		}
		out.Outcome = AlreadyCanceled
	case store.Conflict:
		return CancelResult{Outcome: OtherDebtor}, nil
	default: // Busy or Stale: a send is in flight and cannot be recalled
		return CancelResult{Outcome: InFlight, State: status.Sending, DebtorID: debtor}, nil
	}
	out.Entry = e
	out.Records = canceledRecords(a.Topics, c.IntentID, debtor, e)
	return out, nil
}

// Hold asks to hold a debtor's intents, or one debt's.
type Hold struct {
	ID       string // the hold's id (the field hold:<id>)
	DebtorID string
	DebtID   string     // "" for every debt of the debtor
	Reason   string     // one of HoldReasons
	Until    *time.Time // nil: cancel until lifted; else pause until then
	Actor    string
	Via      Via
}

// HoldResult is a hold's record and the intents it canceled at once.
type HoldResult struct {
	Record   optout.OptOut
	Canceled int
	// Records are the status events (and tombstones) of the intents it
	// canceled: publish them before answering or committing.
	Records []kafka.Message
}

// ErrNotRecorded: the hold (or its lifting) is not on its topic and in
// Redis; nothing else was done. Repeat the command.
var ErrNotRecorded = errors.New("control: the hold could not be recorded")

// Hold records h on the opt-out topic and in the debtor's opt-out hash,
// where the gate reads it in the same call as its decision; then, for a
// hold without until, cancels the debtor's pending intents (of the debt,
// when given) at once, so their status says so and the scheduler drops
// them (the gate would cancel them anyway when they come due).
func (a *Applier) Hold(ctx context.Context, h Hold) (HoldResult, error) {
	o := optout.OptOut{DebtorID: h.DebtorID, Channel: optout.HoldPrefix + h.ID, Source: optout.SourceBankRequest, Reason: h.Reason,
		At: a.Now().UTC().Truncate(time.Millisecond), Actor: h.Actor, DebtID: h.DebtID}
	if h.Until != nil {
		o.UntilMS = h.Until.UnixMilli()
	}
	if err := a.OptOuts.Record(ctx, o); err != nil {
		return HoldResult{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	out := HoldResult{Record: o}
	if h.Until != nil || a.Canceler == nil {
		return out, nil
	}
	pending, err := a.Holds.PendingOf(ctx, h.DebtorID)
	if err != nil {
		return out, err
	}
	for _, p := range pending {
		if h.DebtID != "" && p.DebtID != h.DebtID {
			continue
		}
		e := status.Entry{At: a.Now().UTC(), State: status.Canceled, Reason: h.Reason, Rule: "hold",
			Detail: "hold " + h.ID + " by " + h.Actor, Worker: string(h.Via)}
		res, err := a.claimCanceled(ctx, p.ID, h.DebtorID, string(h.Via)+"/hold", e)
		if err != nil {
			return out, err
		}
		if res.Outcome != store.Claimed {
			continue // decided meanwhile
		}
		e.Seq = res.Seq
		out.Records = append(out.Records, canceledRecords(a.Topics, p.ID, h.DebtorID, e)...)
		out.Canceled++
		a.count(h.Reason)
	}
	return out, nil
}

// ErrNoHold: the debtor has no hold of that id.
var ErrNoHold = errors.New("control: no such hold")

// Release lifts a debtor's hold: intents arriving afterwards pass the gate
// again (those it canceled stay canceled). It returns the hold as it was.
func (a *Applier) Release(ctx context.Context, debtorID, holdID, actor string) (optout.OptOut, error) {
	h, err := a.Holds.HoldsOf(ctx, debtorID)
	if err != nil {
		return optout.OptOut{}, err
	}
	raw, ok := h[holdID]
	if !ok {
		return optout.OptOut{}, ErrNoHold
	}
	var o optout.OptOut
	_ = json.Unmarshal([]byte(raw), &o)
	lift := optout.OptOut{DebtorID: debtorID, Channel: optout.HoldPrefix + holdID, Source: optout.SourceBankRequest, Reason: o.Reason,
		At: a.Now().UTC().Truncate(time.Millisecond), Removed: true, Actor: actor, DebtID: o.DebtID, UntilMS: o.UntilMS}
	if err := a.OptOuts.Record(ctx, lift); err != nil {
		return optout.OptOut{}, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return o, nil
}

// claimCanceled moves intent id of debtor to canceled, with e's reason, in
// the claim script: atomic with any gate call on the record.
func (a *Applier) claimCanceled(ctx context.Context, id, debtor, owner string, e status.Entry) (store.ClaimResult, error) {
	return a.Canceler.Claim(ctx, store.ClaimRequest{ID: id, DebtorID: debtor, Owner: owner, Now: e.At,
		Target: status.Canceled, Reason: e.Reason, Entry: e})
}

func (a *Applier) count(reason string) {
	if a.Canceled != nil {
		a.Canceled(reason)
	}
}

// canceledRecords are what a cancellation publishes: the status event and
// the tombstone on the deferred topic.
func canceledRecords(topics kafkaio.Topics, id, debtor string, e status.Entry) []kafka.Message {
	ev, _ := json.Marshal(status.TransitionEvent(id, debtor, e))
	return []kafka.Message{{Topic: topics.Status, Key: []byte(id), Value: ev}, {Topic: topics.Deferred, Key: []byte(id)}}
}
