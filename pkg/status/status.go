// Package status owns an intent's life after it reached the dispatcher: the
// states it moves through, the timeline of decisions and attempts kept for the
// regulator, and the events published on reminders.status.
package status

import (
	"encoding/json"
	"time"
)

// State is where an intent stands.
type State string

// The states of an intent. Terminal states never change again, except that a
// delivery callback may move sent or sent_unconfirmed forward.
const (
	Accepted        State = "accepted"         // taken in over HTTP, not yet decided
	Deferred        State = "deferred"         // may not go now; scheduled for later
	Sending         State = "sending"          // a contact slot is reserved; the provider is being called
	Sent            State = "sent"             // the provider accepted it
	Delivered       State = "delivered"        // the provider confirmed delivery
	Failed          State = "failed"           // could not be sent
	Undelivered     State = "undelivered"      // the provider accepted but could not deliver
	SentUnconfirmed State = "sent_unconfirmed" // the provider may have it; never resent blindly
	Suppressed      State = "suppressed"       // decided not to send (see Reason)
	Rejected        State = "rejected"         // invalid; the original is in the DLQ
	Canceled        State = "canceled"         // upstream canceled it before it was sent (see Reason)
)

// Terminal reports whether s is an end state for the dispatcher's own
// decisions: an intent in it is never sent (again).
func (s State) Terminal() bool {
	switch s {
	case Sent, Delivered, Failed, Undelivered, SentUnconfirmed, Suppressed, Rejected, Canceled:
		return true
	}
	return false
}

// Reasons for suppressed, failed and deferred states.
const (
	ReasonDuplicate = "duplicate"
	ReasonExpired   = "expired"
	// ReasonNoAllowedTime: the windows of the debtor's zones never overlap,
	// so no instant is allowed in all of them at once.
	ReasonNoAllowedTime = "no_allowed_time"
	// ReasonProviderBusy: the channel's provider was at its concurrency or
	// its rate for longer than the worker waits: deferred without a call.
	ReasonProviderBusy = "provider_busy"
	ReasonOptedOut     = "opted_out"
	ReasonFrequencyCap = "frequency_cap"
	ReasonDoNotContact = "do_not_contact"
	ReasonInvalid      = "invalid"
)

// Entry is one line of an intent's timeline: a decision or an attempt. It
// holds no personal data: addresses are masked before they get here.
type Entry struct {
	Seq        int64     `json:"seq"`
	At         time.Time `json:"at"`
	State      State     `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	To         string    `json:"to,omitempty"` // masked address
	Provider   string    `json:"provider,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	Worker     string    `json:"worker,omitempty"`

	// The audit trail of a gate decision: which rule of which profile made
	// it, the rule's legal source as the profile states it, and the inputs
	// that decided it.
	Rule    string `json:"rule,omitempty"`
	Profile string `json:"profile,omitempty"`
	// Version is the profile's content hash at decision time (its file and
	// calendars): the text that decided, whatever is loaded later.
	Version string `json:"profile_version,omitempty"`
	Source  string `json:"source,omitempty"`
	// Sources: for a send, the legal source of every rule that could have
	// blocked it (rule id → source). Published on reminders.status; Redis
	// keeps the rule ids and the API adds the texts of the version.
	Sources map[string]string `json:"sources,omitempty"`
	Until   *time.Time        `json:"until,omitempty"` // deferred until
	Inputs  *Inputs           `json:"inputs,omitempty"`
	// UntilMS is how the gate script writes Until; readers get Until.
	UntilMS int64 `json:"until_ms,omitempty"`

	// On a claim (state sending) as published on reminders.status, never
	// kept in the record: the intent's debt and the keyed digest of the
	// address contacted, so that the rebuild after a Redis loss counts the
	// contact again per debt and per number.
	DebtID   string `json:"debt_id,omitempty"`
	ToDigest string `json:"to_digest,omitempty"`
}

// Inputs are what a gate decision was made on.
type Inputs struct {
	Zones      []string       `json:"zones,omitempty"`       // the debtor's possible time zones
	LocalTimes []string       `json:"local_times,omitempty"` // the time of the decision in each
	Counts     map[string]int `json:"counts,omitempty"`      // per rule id: contacts counted in its window
	// Notes explain what the rule id alone does not, each "rule: note":
	// "cn.voice.holidays: calendar does not cover 2028".
	Notes []string `json:"notes,omitempty"`
	// Checks are the rules evaluated, per candidate channel, with the
	// limit of each count rule; its count is under Counts (by rule id).
	Checks []Check `json:"checks,omitempty"`
}

// Check is one rule a gate decision evaluated.
type Check struct {
	Channel string `json:"channel"`
	Rule    string `json:"rule"`
	Kind    string `json:"kind"`            // window, holiday, cap, gap
	Limit   int    `json:"limit,omitempty"` // cap and gap: contacts allowed in the span
	Per     string `json:"per,omitempty"`   // cap and gap: calendar_day, or the sliding span (1h0m0s)
	Count   *int   `json:"count,omitempty"` // filled from Inputs.Counts when read
}

// Explain fills each count check's Count from Counts, so a reader sees
// every rule evaluated with its count and limit side by side.
func (in *Inputs) Explain() {
	if in == nil {
		return
	}
	for i := range in.Checks {
		c := &in.Checks[i]
		if n, ok := in.Counts[c.Rule]; ok && c.Limit > 0 && c.Count == nil {
			c.Count = &n
		}
	}
}

// Record is everything the dispatcher keeps about one intent.
type Record struct {
	ID        string    `json:"id"`
	DebtorID  string    `json:"debtor_id"`
	State     State     `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Template  string    `json:"template,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Timeline  []Entry   `json:"timeline"`
}

// Last returns the newest timeline entry, or the zero Entry.
func (r Record) Last() Entry {
	if len(r.Timeline) == 0 {
		return Entry{}
	}
	return r.Timeline[len(r.Timeline)-1]
}

// Event kinds on reminders.status.
const (
	KindTransition = "transition" // the intent's record changed; fold these
	KindDuplicate  = "duplicate"  // the same id arrived again; the record did not change
	// KindContact: a contact the gate counts that is no transition of an
	// intent (a connected call, a conversation reported by the bank):
	// durable here so the rebuild after a Redis loss counts it again.
	KindContact = "contact"
)

// Event is one message on reminders.status, keyed by intent id. Events are
// delivered at least once: (id, seq) identifies a transition, so a consumer
// that folds them into a state drops the ones it has seen.
type Event struct {
	Kind       string            `json:"kind"`
	ID         string            `json:"id"`
	DebtorID   string            `json:"debtor_id"`
	Seq        int64             `json:"seq,omitempty"`
	State      State             `json:"state"`
	Reason     string            `json:"reason,omitempty"`
	Channel    string            `json:"channel,omitempty"`
	At         time.Time         `json:"at"`
	To         string            `json:"to,omitempty"`
	Provider   string            `json:"provider,omitempty"`
	ProviderID string            `json:"provider_id,omitempty"`
	ErrorCode  string            `json:"error_code,omitempty"`
	Detail     string            `json:"detail,omitempty"`
	Rule       string            `json:"rule,omitempty"`
	Profile    string            `json:"profile,omitempty"`
	Version    string            `json:"profile_version,omitempty"`
	Source     string            `json:"source,omitempty"`
	Sources    map[string]string `json:"sources,omitempty"`
	Until      *time.Time        `json:"until,omitempty"`
	Inputs     *Inputs           `json:"inputs,omitempty"`
	// A claim (state sending): the intent's debt and the keyed digest of
	// the address contacted (see Entry). A contact event: the debt of a
	// conversation.
	DebtID   string `json:"debt_id,omitempty"`
	ToDigest string `json:"to_digest,omitempty"`
	// Counted, on a contact event (kind contact): the event the contact
	// counts as in the gate's streams (connected, conversation); Member is
	// its member there (a CallSid, a conversation's time).
	Counted string `json:"counted,omitempty"`
	Member  string `json:"member,omitempty"`
}

// TransitionEvent makes the event that publishes entry e of intent id.
func TransitionEvent(id, debtorID string, e Entry) Event {
	return Event{
		Kind: KindTransition, ID: id, DebtorID: debtorID, Seq: e.Seq, State: e.State,
		Reason: e.Reason, Channel: e.Channel, At: e.At, To: e.To, Provider: e.Provider,
		ProviderID: e.ProviderID, ErrorCode: e.ErrorCode, Detail: e.Detail,
		Rule: e.Rule, Profile: e.Profile, Version: e.Version, Source: e.Source, Sources: e.Sources,
		Until: e.Until, Inputs: e.Inputs, DebtID: e.DebtID, ToDigest: e.ToDigest,
	}
}

// Entry returns the timeline entry a transition event publishes.
func (ev Event) Entry() Entry {
	return Entry{
		Seq: ev.Seq, At: ev.At, State: ev.State, Reason: ev.Reason, Channel: ev.Channel, To: ev.To,
		Provider: ev.Provider, ProviderID: ev.ProviderID, ErrorCode: ev.ErrorCode, Detail: ev.Detail,
		Rule: ev.Rule, Profile: ev.Profile, Version: ev.Version, Source: ev.Source, Until: ev.Until, Inputs: ev.Inputs,
		// Sources stay on the topic: the API adds them from the version.
	}
}

// Deferral is the value on reminders.deferred (compacted, key = intent id):
// an intent waiting for the time it may be sent. A tombstone (no value)
// removes it once the intent reached an end state.
type Deferral struct {
	ID         string          `json:"id"`
	DebtorID   string          `json:"debtor_id"`
	Due        time.Time       `json:"due"`
	Rule       string          `json:"rule"`
	Seq        int64           `json:"seq"`               // the deferred transition's seq
	Retries    int             `json:"retries,omitempty"` // failed sends retried so far
	DeferredAt time.Time       `json:"deferred_at"`
	Intent     json.RawMessage `json:"intent"` // the intent as it arrived
}
