package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/catalog"
	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// countingSender wraps a sandbox, counting calls, with a switchable
// idempotency claim.
type countingSender struct {
	*sandbox.Sandbox
	calls      atomic.Int64
	idempotent bool
}

func (c *countingSender) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	c.calls.Add(1)
	return c.Sandbox.Send(ctx, m)
}

func (c *countingSender) Idempotent() bool { return c.idempotent }

type fixture struct {
	rdb    *redis.Client
	w      *Worker
	st     *store.Store
	sb     *countingSender
	now    time.Time
	worker string
}

func newFixture(t *testing.T, idempotent bool) *fixture {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkRebuilt(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.Load(configs.FS)
	if err != nil {
		t.Fatal(err)
	}
	prof, err := policy.Load(configs.FS, "cn-bank")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{Idempotent: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{rdb: rdb, st: st, sb: &countingSender{Sandbox: sb, idempotent: idempotent}, now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), worker: "w1"}
	senders := map[intent.Channel]Sender{}
	for _, ch := range intent.Channels {
		senders[ch] = f.sb
	}
	f.w, err = New(Config{Owner: f.worker, SendTimeout: 200 * time.Millisecond, RetryBase: time.Minute, RetryLimit: 3}, Deps{
		Reader: nopReader{}, Publisher: nopPublisher{}, Store: st, Templates: cat, Profile: prof, Senders: senders,
		OptOuts: &optout.Recorder{Topic: kafkaio.DefaultTopics.OptOuts, Pub: nopPublisher{}, Hot: st},
		Now:     func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type nopReader struct{}

func (nopReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}
func (nopReader) CommitMessages(context.Context, ...kafka.Message) error { return nil }

type nopPublisher struct{}

func (nopPublisher) WriteMessages(context.Context, ...kafka.Message) error { return nil }

func sampleIntent(id string) intent.Intent {
	exp := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	return intent.Intent{
		ID: id, DebtorID: "D-1001", Template: "overdue_notice", Locale: "zh-CN",
		Channels: []intent.Channel{intent.SMS},
		To:       intent.Address{Phone: "+8613800138000"},
		Params:   map[string]string{"name": "张三", "amount": "1,234.00", "due_date": "2026-11-20"},
		Timezone: "Asia/Shanghai", ExpiresAt: &exp,
	}
}

func msgOf(t *testing.T, v any) kafka.Message {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return msgOfBytes(b)
}

func msgOfBytes(b []byte) kafka.Message {
	return kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Partition: 3, Offset: 77, Key: []byte("D-1001"), Value: b}
}

// events decodes the status events among recs.
func events(t *testing.T, recs []kafka.Message) []status.Event {
	t.Helper()
	var out []status.Event
	for _, r := range recs {
		if r.Topic != kafkaio.DefaultTopics.Status {
			continue
		}
		var ev status.Event
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func states(evs []status.Event) []string {
	var out []string
	for _, e := range evs {
		s := e.Kind + ":" + string(e.State)
		if e.Reason != "" {
			s += "/" + e.Reason
		}
		out = append(out, s)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (f *fixture) record(t *testing.T, id string) status.Record {
	t.Helper()
	rec, err := f.st.GetFor(context.Background(), "D-1001", id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestDecide(t *testing.T) {
	ctx := context.Background()
	expired := sampleIntent("I-expired")
	past := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	expired.ExpiresAt = &past
	badChannel := sampleIntent("I-bad")
	badChannel.Channels = []intent.Channel{"fax"}

	for _, tc := range []struct {
		name       string
		in         any
		fault      *sandbox.Fault
		retries    int
		idempotent bool
		wantEvents []string
		wantState  status.State
		wantCalls  int64
		wantDLQ    bool
	}{
		{name: "sent", in: sampleIntent("I-1"), wantEvents: []string{"transition:sending", "transition:sent"}, wantState: status.Sent, wantCalls: 1},
		{name: "expired is suppressed unsent", in: expired, wantEvents: []string{"transition:suppressed/expired"}, wantState: status.Suppressed},
		{name: "invalid with usable id is rejected and recorded", in: badChannel, wantEvents: []string{"transition:rejected/invalid"}, wantState: status.Rejected, wantDLQ: true},
		{name: "permanent failure is not retried", in: sampleIntent("I-perm"), fault: &sandbox.Fault{Kind: channel.Permanent, Code: "21211"},
			wantEvents: []string{"transition:sending", "transition:failed/permanent"}, wantState: status.Failed, wantCalls: 1},
		{name: "retryable failure is deferred for a retry", in: sampleIntent("I-retry"), fault: &sandbox.Fault{Kind: channel.Retryable, Times: 1},
			wantEvents: []string{"transition:sending", "transition:deferred/retry"}, wantState: status.Deferred, wantCalls: 1},
		{name: "retryable failure after the last retry fails", in: sampleIntent("I-retry-out"), retries: 3, fault: &sandbox.Fault{Kind: channel.Retryable},
			wantEvents: []string{"transition:sending", "transition:failed/retries_exhausted"}, wantState: status.Failed, wantCalls: 1},
		{name: "unknown outcome is never resent by a non-idempotent provider", in: sampleIntent("I-unknown"), fault: &sandbox.Fault{Kind: channel.Unknown},
			wantEvents: []string{"transition:sending", "transition:sent_unconfirmed/unknown_outcome"}, wantState: status.SentUnconfirmed, wantCalls: 1},
		{name: "unknown outcome at an idempotent provider is retried later", in: sampleIntent("I-unknown-idem"), fault: &sandbox.Fault{Kind: channel.Unknown, Times: 1}, idempotent: true,
			wantEvents: []string{"transition:sending", "transition:deferred/retry"}, wantState: status.Deferred, wantCalls: 1},
		{name: "the provider says the recipient opted out", in: sampleIntent("I-optout"), fault: &sandbox.Fault{Kind: channel.Permanent, Code: "21610", OptOut: true},
			wantEvents: []string{"transition:sending", "transition:suppressed/opted_out"}, wantState: status.Suppressed, wantCalls: 1},
		{name: "a timeout is an unknown outcome", in: sampleIntent("I-slow"), fault: &sandbox.Fault{Delay: time.Second},
			wantEvents: []string{"transition:sending", "transition:sent_unconfirmed/unknown_outcome"}, wantState: status.SentUnconfirmed, wantCalls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.idempotent)
			if tc.fault != nil {
				f.sb.SetFault(intent.SMS, *tc.fault)
			}
			m := msgOf(t, tc.in)
			if tc.retries > 0 {
				m.Headers = append(m.Headers, kafka.Header{Key: kafkaio.HeaderRetries, Value: []byte(fmt.Sprint(tc.retries))})
			}
			recs, err := f.w.Decide(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if got := states(events(t, recs)); !equal(got, tc.wantEvents) {
				t.Errorf("events %v, want %v", got, tc.wantEvents)
			}
			id := tc.in.(intent.Intent).ID
			if rec := f.record(t, id); rec.State != tc.wantState {
				t.Errorf("record state %s, want %s", rec.State, tc.wantState)
			}
			if got := f.sb.calls.Load(); got != tc.wantCalls {
				t.Errorf("provider called %d times, want %d", got, tc.wantCalls)
			}
			var dlq int
			for _, r := range recs {
				if r.Topic == kafkaio.DefaultTopics.DLQ {
					dlq++
					if kafkaio.Header(r, kafkaio.HeaderCode) != "unknown" || kafkaio.Header(r, kafkaio.HeaderSourceOffset) != "77" {
						t.Errorf("DLQ headers %v", r.Headers)
					}
				}
			}
			if (dlq == 1) != tc.wantDLQ {
				t.Errorf("%d DLQ records, want DLQ %v", dlq, tc.wantDLQ)
			}
			optedOut := f.rdb.HExists(ctx, f.st.Keys().OptOuts("D-1001"), "sms").Val()
			if optedOut != (tc.fault != nil && tc.fault.OptOut) {
				t.Errorf("SMS opt-out recorded: %v", optedOut)
			}
			var deferrals int
			for _, r := range recs {
				if r.Topic == kafkaio.DefaultTopics.Deferred && r.Value != nil {
					deferrals++
				}
			}
			if (deferrals == 1) != (tc.wantState == status.Deferred) {
				t.Errorf("%d deferrals for state %s", deferrals, tc.wantState)
			}
		})
	}
}

func TestDecideDuplicate(t *testing.T) {
	f := newFixture(t, true)
	m := msgOf(t, sampleIntent("I-dup"))
	if _, err := f.w.Decide(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	recs, err := f.w.Decide(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"transition:sending", "transition:sent", "duplicate:suppressed/duplicate"}
	if got := states(events(t, recs)); !equal(got, want) {
		t.Errorf("events %v, want %v (the record's transitions again, then the duplicate)", got, want)
	}
	if f.sb.calls.Load() != 1 {
		t.Errorf("provider called %d times, want 1", f.sb.calls.Load())
	}
	if rec := f.record(t, "I-dup"); rec.State != status.Sent || len(rec.Timeline) != 2 {
		t.Errorf("record changed by a duplicate: %s with %d entries", rec.State, len(rec.Timeline))
	}
}

func TestDecideUnusableIDGoesToDLQOnly(t *testing.T) {
	f := newFixture(t, true)
	recs, err := f.w.Decide(context.Background(), kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Value: []byte(`{"id":`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Topic != kafkaio.DefaultTopics.DLQ || string(recs[0].Value) != `{"id":` {
		t.Fatalf("records %v, want the original bytes in the DLQ only", recs)
	}
	if kafkaio.Header(recs[0], kafkaio.HeaderReason) == "" {
		t.Error("DLQ record has no reason")
	}
}

// A worker died holding an intent in "sending": the next one waits for the
// lease, then resolves the unknown outcome.
func TestDecideAfterWorkerDied(t *testing.T) {
	for _, tc := range []struct {
		name       string
		idempotent bool
		want       status.State
		reason     string
		calls      int64
	}{
		{"idempotent provider: sent again, recognised", true, status.Sent, "", 1},
		{"other provider: never resent", false, status.SentUnconfirmed, "worker_lost_during_send", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.idempotent)
			in := sampleIntent("I-held")
			// The dead worker's claim, its lease running until now+1m.
			_, err := f.st.Claim(context.Background(), store.ClaimRequest{
				ID: in.ID, DebtorID: in.DebtorID, Owner: "dead", Now: f.now, LeaseUntil: f.now.Add(time.Minute),
				Target: status.Sending, Channel: "sms", Entry: status.Entry{At: f.now, State: status.Sending},
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.w.Decide(context.Background(), msgOf(t, in))
			var busy *busyError
			if !errors.As(err, &busy) || busy.owner != "dead" {
				t.Fatalf("while the lease runs: %v, want busy", err)
			}
			f.now = f.now.Add(time.Minute + time.Second)
			recs, err := f.w.Decide(context.Background(), msgOf(t, in))
			if err != nil {
				t.Fatal(err)
			}
			rec := f.record(t, in.ID)
			if rec.State != tc.want || rec.Reason != tc.reason {
				t.Errorf("record %s/%s, want %s/%s", rec.State, rec.Reason, tc.want, tc.reason)
			}
			if f.sb.calls.Load() != tc.calls {
				t.Errorf("provider called %d times, want %d", f.sb.calls.Load(), tc.calls)
			}
			if evs := events(t, recs); len(evs) < 2 || evs[0].State != status.Sending {
				t.Errorf("events %v, want the dead worker's sending transition published again first", states(evs))
			}
		})
	}
}

// A rejected intent contacted no one: a corrected copy with its id is sent.
func TestDecideCorrectedAfterRejection(t *testing.T) {
	f := newFixture(t, true)
	bad := sampleIntent("I-fixed")
	delete(bad.Params, "amount")
	if _, err := f.w.Decide(context.Background(), msgOf(t, bad)); err != nil {
		t.Fatal(err)
	}
	if rec := f.record(t, "I-fixed"); rec.State != status.Rejected {
		t.Fatalf("state %s, want rejected", rec.State)
	}
	if _, err := f.w.Decide(context.Background(), msgOf(t, sampleIntent("I-fixed"))); err != nil {
		t.Fatal(err)
	}
	rec := f.record(t, "I-fixed")
	if rec.State != status.Sent || len(rec.Timeline) != 3 || f.sb.calls.Load() != 1 {
		t.Errorf("state %s with %d entries after %d sends, want sent after rejected, once", rec.State, len(rec.Timeline), f.sb.calls.Load())
	}
	// …and a malformed copy after that changes nothing.
	if _, err := f.w.Decide(context.Background(), msgOf(t, bad)); err != nil {
		t.Fatal(err)
	}
	if rec := f.record(t, "I-fixed"); rec.State != status.Sent {
		t.Errorf("a malformed copy changed the record to %s", rec.State)
	}
}
