package worker

import (
	"github.com/segmentio/kafka-go"

	"fmt"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
)

// Seven debtors give one family phone; each gets one call at local noon on
// a working day under cn-bank (≤ 6 call attempts a day to one number):
// through the worker's lanes, six calls are placed and the seventh is
// deferred by the per-number rule to the number's next local midnight.
func TestSharedNumberCapAcrossDebtors(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC) // Monday noon in Shanghai
	g := newGatedSender(0)
	for _, ch := range intent.Channels {
		f.w.Senders[ch] = g
	}
	var msgs []kafka.Message
	for i := 1; i <= 7; i++ {
		in := noonIntent(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i), intent.Voice)
		msgs = append(msgs, keyed(t, in))
	}
	r := &feedReader{msgs: onPartition(0, msgs...)}
	pub := &collector{}
	runLanes(t, f.w, r, pub, len(msgs))

	sent, deferred := 0, ""
	for i := 1; i <= 7; i++ {
		id, debtor := fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i)
		rec, err := f.st.GetFor(t.Context(), debtor, id)
		if err != nil {
			t.Fatal(err)
		}
		switch rec.State {
		case status.Sent:
			sent++
		case status.Deferred:
			last := rec.Last()
			midnight := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC) // 24 Nov 00:00 Shanghai
			if last.Rule != "cn.voice.attempts-per-number-daily" || last.Reason != "frequency_cap" || last.Until == nil || !last.Until.Equal(midnight) {
				t.Fatalf("%s deferred by %s/%s until %v, want the per-number rule until %v", id, last.Rule, last.Reason, last.Until, midnight)
			}
			if n := last.Inputs.Counts["cn.voice.attempts-per-number-daily"]; n != 6 {
				t.Fatalf("%s's decision counts %d calls to the number, want 6", id, n)
			}
			deferred = id
		default:
			t.Fatalf("%s ended %s/%s", id, rec.State, rec.Reason)
		}
	}
	if sent != 6 || deferred == "" || g.calls.Load() != 6 {
		t.Fatalf("%d sent, %d calls placed, deferred %q: want 6 placed and one deferred", sent, g.calls.Load(), deferred)
	}
}
