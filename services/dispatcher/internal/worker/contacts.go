package worker

import (
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// countedIn lists the streams a contact on ch is counted in: those the
// profile's rules read (its channel or all channels, for the debtor, the
// debt or the number), and always all channels for the debtor (the recent
// contacts the API shows). number names the number (ScopeID, or its Digest
// when only that is known); a contact without one, or on a channel that
// does not reach a phone, is counted per number nowhere.
func countedIn(reads map[policy.Stream]bool, ch intent.Channel, debtID string, number store.Stream) []store.Stream {
	out := []store.Stream{{Event: policy.EventAttempt, Channel: policy.ChannelAny, Scope: policy.ScopeDebtor}}
	hasNumber := (number.ScopeID != "" || number.Digest != "") && (ch == intent.SMS || ch == intent.Voice)
	for _, scope := range []string{policy.ScopeDebtor, policy.ScopeDebt, policy.ScopeNumber} {
		if scope == policy.ScopeDebt && debtID == "" || scope == policy.ScopeNumber && !hasNumber {
			continue
		}
		for _, c := range []string{string(ch), policy.ChannelAny} {
			if c == policy.ChannelAny && scope == policy.ScopeDebtor {
				continue // always there
			}
			if !reads[policy.Stream{Event: policy.EventAttempt, Channel: c, Scope: scope}] {
				continue
			}
			st := store.Stream{Event: policy.EventAttempt, Channel: c, Scope: scope}
			switch scope {
			case policy.ScopeDebt:
				st.ScopeID = debtID
			case policy.ScopeNumber:
				st.ScopeID, st.Digest = number.ScopeID, number.Digest
			}
			out = append(out, st)
		}
	}
	return out
}

// Recount is what the status events of reminders.status say the gate had
// counted, for the rebuild after Redis lost its data.
type Recount struct {
	Contacts []store.Contact
	Numbers  []store.NumberDebtor
	// NoNumber counts claims of SMS or voice without the number's digest
	// (published before claims carried it): their per-number counts cannot
	// be rebuilt.
	NoNumber int
}

// RecountOf turns events into the contacts to count again, in the streams
// the profile reads: every claim (state sending) as an attempt on its
// channel — also a claim whose send then failed before a provider took it,
// which the live gate uncounted (the rebuild over-counts those, never
// under-counts) — and every contact event (a connected call, a
// conversation) in the stream it was counted in. Claims of SMS and voice
// index their number's digest to the debtor.
func RecountOf(p *policy.Profile, evs []status.Event) Recount {
	reads := readsOf(p)
	var out Recount
	for _, ev := range evs {
		if ev.DebtorID == "" {
			continue
		}
		switch {
		case ev.Kind == status.KindTransition && ev.State == status.Sending && ev.ID != "" && ev.Channel != "":
			ch := intent.Channel(ev.Channel)
			out.Contacts = append(out.Contacts, store.Contact{
				DebtorID: ev.DebtorID, Member: ev.ID, At: ev.At,
				Streams: countedIn(reads, ch, ev.DebtID, store.Stream{Digest: ev.ToDigest}),
			})
			phone := ch == intent.SMS || ch == intent.Voice
			if phone && ev.ToDigest == "" {
				out.NoNumber++
			}
			if phone && ev.ToDigest != "" {
				out.Numbers = append(out.Numbers, store.NumberDebtor{Digest: ev.ToDigest, DebtorID: ev.DebtorID})
			}
		case ev.Kind == status.KindContact && ev.Counted != "" && ev.Member != "":
			out.Contacts = append(out.Contacts, store.Contact{
				DebtorID: ev.DebtorID, Member: ev.Member, At: ev.At,
				Streams: []store.Stream{store.ContactStream(ev.Counted, ev.Channel, ev.DebtID)},
			})
		}
	}
	return out
}
