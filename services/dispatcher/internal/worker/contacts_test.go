package worker

import (
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// RecountOf counts a claim in exactly the streams the live gate counted it
// in (countIn), the number by its digest; a connected call and a
// conversation in theirs; transitions other than claims in none; and it
// reports claims of a phone channel published without a digest.
func TestRecountOfMatchesCountIn(t *testing.T) {
	p := loadProfile(t, "cn-bank") // reads attempts per debtor, and voice attempts per number
	w := &Worker{Deps: Deps{Profile: p}, reads: readsOf(p)}
	at := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	in := intent.Intent{ID: "I-1", DebtorID: "D-1", DebtID: "L-1", Channels: []intent.Channel{intent.SMS, intent.Voice},
		To: intent.Address{Phone: "+8613800000001"}}
	for _, ch := range in.Channels {
		live := w.countIn(in, ch)
		rc := RecountOf(w.Profile, []status.Event{{Kind: status.KindTransition, ID: in.ID, DebtorID: in.DebtorID, State: status.Sending,
			Channel: string(ch), At: at, DebtID: in.DebtID, ToDigest: store.Keys{}.AddressDigest(in.To.Phone)}})
		if len(rc.Contacts) != 1 || rc.Contacts[0].Member != in.ID || !rc.Contacts[0].At.Equal(at) {
			t.Fatalf("%s: %+v", ch, rc)
		}
		if got, want := keysOf(rc.Contacts[0].Streams), keysOf(live); !slices.Equal(got, want) || ch == intent.Voice && len(live) != 2 {
			t.Errorf("%s: rebuilt in %v, counted live in %v", ch, got, want)
		}
	}
	rc := RecountOf(w.Profile, []status.Event{
		{Kind: status.KindTransition, ID: "I-2", DebtorID: "D-1", State: status.Sent, Channel: "sms", At: at},
		{Kind: status.KindTransition, ID: "I-3", DebtorID: "D-1", State: status.Sending, Channel: "voice", At: at},
		{Kind: status.KindContact, ID: "I-3", DebtorID: "D-1", Counted: "connected", Channel: "voice", Member: "CA1", At: at},
		{Kind: status.KindContact, DebtorID: "D-1", Counted: "conversation", Channel: "voice", DebtID: "L-1", Member: "conversation:x", At: at},
	})
	if len(rc.Contacts) != 3 || rc.NoNumber != 1 || len(rc.Numbers) != 0 {
		t.Fatalf("recount: %+v", rc)
	}
	if s := rc.Contacts[1].Streams[0]; s != (store.Stream{Event: "connected", Channel: "voice", Scope: "debtor"}) {
		t.Errorf("connected call counted in %+v", s)
	}
	if s := rc.Contacts[2].Streams[0]; s != (store.Stream{Event: "conversation", Channel: "voice", Scope: "debt", ScopeID: "L-1"}) {
		t.Errorf("conversation counted in %+v", s)
	}
}

// keysOf names streams by the key they have, so a stream named by its
// number and one named by the number's digest compare equal.
func keysOf(ss []store.Stream) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, store.Keys{}.Stream("D-1", s))
	}
	sort.Strings(out)
	return out
}
