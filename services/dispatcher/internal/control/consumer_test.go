package control

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// publisher records what is written; failing > 0 makes that many writes fail.
type publisher struct {
	mu      sync.Mutex
	msgs    []kafka.Message
	failing int
}

func (p *publisher) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing > 0 {
		p.failing--
		return errors.New("broker unavailable")
	}
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *publisher) take(topic string) []kafka.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out, rest []kafka.Message
	for _, m := range p.msgs {
		if m.Topic == topic {
			out = append(out, m)
		} else {
			rest = append(rest, m)
		}
	}
	p.msgs = rest
	return out
}

func onEachRedis(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient, prefix string)) {
	t.Run("redis", func(t *testing.T) {
		c, p := testenv.Redis(t)
		f(t, c, p)
	})
	t.Run("redis cluster", func(t *testing.T) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t)})
		t.Cleanup(func() { c.Close() })
		f(t, c, testenv.Prefix(t))
	})
}

func command(t *testing.T, key string, d doc) kafka.Message {
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Topic: kafkaio.DefaultTopics.Control, Key: []byte(key), Value: b, Partition: 1, Offset: 7}
}

// The consumer's handling of each kind of command against the real store:
// a cancel before its intent, replays that change nothing, a hold that
// cancels pending intents, a release (and a hold replayed after it), the
// DLQ for bad commands, too late, in flight, a pause already over, and a
// Kafka write that fails for a while.
func TestConsumerHandle(t *testing.T) {
	onEachRedis(t, func(t *testing.T, rdb redis.UniversalClient, prefix string) {
		ctx := context.Background()
		now := time.Date(2026, 12, 31, 15, 50, 0, 0, time.UTC) // 23:50 on New Year's Eve in Shanghai
		st, err := store.New(rdb, store.Config{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.MarkRebuilt(ctx, now); err != nil {
			t.Fatal(err)
		}
		pub := &publisher{}
		var canceled int
		a := &Applier{Records: st, Canceler: st, Holds: st, Topics: kafkaio.DefaultTopics, Now: func() time.Time { return now },
			OptOuts:  &optout.Recorder{Topic: kafkaio.DefaultTopics.OptOuts, Pub: pub, Hot: st},
			Canceled: func(string) { canceled++ }}
		sleeps := 0
		c := &Consumer{Publisher: pub, Applier: a, Markers: st, Metrics: NewMetrics(nil), InFlightWait: time.Second,
			Sleep: func(ctx context.Context, d time.Duration) error { sleeps++; return nil }}
		handle := func(m kafka.Message) {
			t.Helper()
			if err := c.Handle(ctx, m); err != nil {
				t.Fatalf("handle: %v", err)
			}
		}
		outcome := func(typ, o string) float64 { return testutil.ToFloat64(c.Metrics.Commands.WithLabelValues(typ, o)) }
		state := func(id string) status.State {
			rec, err := st.Get(ctx, id)
			if err != nil {
				return ""
			}
			return rec.State
		}

		// A cancel before its intent: recorded canceled, status event and
		// tombstone published; the same record again changes nothing.
		pre := command(t, "D-1", cancelDoc.with("intent_id", "I-PRE").with("actor", "loan-core").with("note", "paid at 23:40"))
		handle(pre)
		rec, err := st.Get(ctx, "I-PRE")
		if err != nil || rec.State != status.Canceled || rec.Reason != "paid" {
			t.Fatalf("pre-canceled: %+v %v", rec, err)
		}
		if d := rec.Timeline[len(rec.Timeline)-1].Detail; d != "canceled by control:loan-core: paid at 23:40" {
			t.Errorf("detail %q", d)
		}
		if ev, tomb := pub.take(kafkaio.DefaultTopics.Status), pub.take(kafkaio.DefaultTopics.Deferred); len(ev) != 1 || len(tomb) != 1 || tomb[0].Value != nil {
			t.Errorf("published %d status events and %d tombstones, want 1 and 1", len(ev), len(tomb))
		}
		handle(pre)
		if outcome("cancel", OutcomeApplied) != 1 || outcome("cancel", OutcomeReplayed) != 1 || canceled != 1 || len(pub.msgs) != 0 {
			t.Errorf("replay: applied %v replayed %v counted %d published %d, want 1 1 1 0",
				outcome("cancel", OutcomeApplied), outcome("cancel", OutcomeReplayed), canceled, len(pub.msgs))
		}
		// The intent arrives: the gate takes it for decided.
		g, err := st.Gate(ctx, store.GateRequest{ID: "I-PRE", DebtorID: "D-1", Owner: "w", Template: "t", Now: now, LeaseUntil: now.Add(time.Minute),
			Retention: time.Hour, Entry: status.Entry{At: now, Inputs: &status.Inputs{Zones: []string{"UTC"}}}, Candidates: []store.Candidate{{Channel: "sms", To: "x", WindowOK: true}}})
		if err != nil || g.Outcome == store.Claimed {
			t.Errorf("the pre-canceled intent passed the gate: %+v %v", g, err)
		}

		// A hold of the whole debtor cancels its pending intents at once.
		for _, id := range []string{"I-A", "I-B"} {
			if _, _, err := st.Accept(ctx, id, "D-2", "overdue_notice", status.Entry{At: now, State: status.Accepted}); err != nil {
				t.Fatal(err)
			}
		}
		hold := command(t, "D-2", holdDoc.with("debtor_id", "D-2").with("reason", "deceased"))
		handle(hold)
		if state("I-A") != status.Canceled || state("I-B") != status.Canceled || len(pub.take(kafkaio.DefaultTopics.Status)) != 2 {
			t.Errorf("after the hold: %s %s, want both canceled with their events", state("I-A"), state("I-B"))
		}
		hid := Command{DebtorID: "D-2", CommandID: "c-2"}.HoldIDOf()
		if h, _ := st.HoldsOf(ctx, "D-2"); h[hid] == "" {
			t.Errorf("hold %s not in Redis: %v", hid, h)
		}
		if recs := pub.take(kafkaio.DefaultTopics.OptOuts); len(recs) != 1 || string(recs[0].Key) != "D-2/hold:"+hid {
			t.Errorf("hold records on the opt-out topic: %v", recs)
		}
		// Released, then the hold redelivered: it stays released.
		handle(command(t, "D-2", releaseDoc.with("debtor_id", "D-2").with("hold_id", hid).with("command_id", "c-9")))
		handle(hold)
		if h, _ := st.HoldsOf(ctx, "D-2"); len(h) != 0 {
			t.Errorf("a replayed hold came back after its release: %v", h)
		}

		pub.take(kafkaio.DefaultTopics.Deferred)
		if recs := pub.take(kafkaio.DefaultTopics.OptOuts); len(recs) != 1 || !json.Valid(recs[0].Value) {
			t.Errorf("release: %d opt-out records, want 1", len(recs))
		}

		// Bad commands go to the DLQ with their reason and code, nothing
		// else is done.
		for _, tt := range []struct {
			m    kafka.Message
			code string
		}{
			{command(t, "D-3", holdDoc.with("debtor_id", "D-3").with("reason", "sold")), "invalid_format"},
			{command(t, "D-OTHER", holdDoc.with("debtor_id", "D-3")), CodeKeyMismatch},
			{command(t, "D-3", releaseDoc.with("debtor_id", "D-3").with("hold_id", "H-none")), CodeUnknownHold},
			{command(t, "D-3", cancelDoc.with("debtor_id", "D-3").with("intent_id", "I-A").with("command_id", "c-other")), CodeIDConflict},
			{kafka.Message{Topic: kafkaio.DefaultTopics.Control, Key: []byte("D-3"), Value: []byte("{not json"), Partition: 1, Offset: 7}, "malformed_json"},
		} {
			handle(tt.m)
			dlq := pub.take(kafkaio.DefaultTopics.DLQ)
			if len(dlq) != 1 {
				t.Errorf("%s: %d DLQ records, want 1", tt.code, len(dlq))
				continue
			}
			d := dlq[0]
			if kafkaio.Header(d, kafkaio.HeaderCode) != tt.code || kafkaio.Header(d, kafkaio.HeaderReason) == "" ||
				kafkaio.Header(d, kafkaio.HeaderSourceTopic) != kafkaio.DefaultTopics.Control || kafkaio.Header(d, kafkaio.HeaderSourceOffset) != "7" ||
				string(d.Value) != string(tt.m.Value) || string(d.Key) != string(tt.m.Key) {
				t.Errorf("%s: DLQ record %+v", tt.code, d.Headers)
			}
			if testutil.ToFloat64(c.Metrics.Rejected.WithLabelValues(tt.code)) != 1 {
				t.Errorf("%s: not counted", tt.code)
			}
			if len(pub.msgs) != 0 {
				t.Errorf("%s: published more than its DLQ record: %d", tt.code, len(pub.msgs))
			}
		}
		if h, _ := st.HoldsOf(ctx, "D-3"); len(h) != 0 || state("I-A") != status.Canceled {
			t.Error("a rejected command had an effect")
		}

		// Too late: sent (here suppressed) already.
		if _, err := st.Claim(ctx, store.ClaimRequest{ID: "I-END", DebtorID: "D-4", Owner: "w", Now: now, Target: status.Suppressed,
			Entry: status.Entry{At: now, State: status.Suppressed}}); err != nil {
			t.Fatal(err)
		}
		handle(command(t, "D-4", cancelDoc.with("debtor_id", "D-4").with("intent_id", "I-END").with("command_id", "c-end")))
		if outcome("cancel", OutcomeTooLate) != 1 || state("I-END") != status.Suppressed {
			t.Errorf("too late: %v %s", outcome("cancel", OutcomeTooLate), state("I-END"))
		}
		// In flight: waits InFlightWait for the send to end, then gives up.
		if _, err := st.Claim(ctx, store.ClaimRequest{ID: "I-FLY", DebtorID: "D-4", Owner: "w", Now: now, LeaseUntil: now.Add(time.Minute),
			Target: status.Sending, Channel: "sms", Entry: status.Entry{At: now, State: status.Sending}}); err != nil {
			t.Fatal(err)
		}
		sleeps = 0
		handle(command(t, "D-4", cancelDoc.with("debtor_id", "D-4").with("intent_id", "I-FLY").with("command_id", "c-fly")))
		if outcome("cancel", OutcomeInFlight) != 1 || sleeps != 4 || state("I-FLY") != status.Sending {
			t.Errorf("in flight: %v after %d waits, state %s; want 1 after 4, sending", outcome("cancel", OutcomeInFlight), sleeps, state("I-FLY"))
		}
		// A pause over before it is read is not placed.
		handle(command(t, "D-5", holdDoc.with("debtor_id", "D-5").with("command_id", "c-late").with("until", "2026-12-31T23:00:00+08:00")))
		if h, _ := st.HoldsOf(ctx, "D-5"); len(h) != 0 || outcome("hold", OutcomeExpired) != 1 {
			t.Errorf("a pause already over was placed: %v", h)
		}

		// Kafka refuses writes for a while: the cancel is retried until its
		// records are published, once.
		pub.failing = 3
		handle(command(t, "D-6", cancelDoc.with("debtor_id", "D-6").with("intent_id", "I-K").with("command_id", "c-k")))
		if n := len(pub.take(kafkaio.DefaultTopics.Status)); n != 1 || state("I-K") != status.Canceled {
			t.Errorf("after failed writes: %d status events, state %s; want 1, canceled", n, state("I-K"))
		}
	})
}

// reader hands out msgs, then blocks; it records commits.
type reader struct {
	mu        sync.Mutex
	msgs      []kafka.Message
	committed []int64
	pub       *publisher
	published []int // records published when each commit came
}

func (r *reader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	r.mu.Lock()
	if len(r.msgs) > 0 {
		m := r.msgs[0]
		r.msgs = r.msgs[1:]
		r.mu.Unlock()
		return m, nil
	}
	r.mu.Unlock()
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}

func (r *reader) CommitMessages(_ context.Context, msgs ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pub.mu.Lock()
	n := len(r.pub.msgs)
	r.pub.mu.Unlock()
	for _, m := range msgs {
		r.committed = append(r.committed, m.Offset)
		r.published = append(r.published, n)
	}
	return nil
}

// Run: a bad command between good ones neither blocks the partition nor
// loses what follows; each offset is committed in order, after its records
// are on Kafka.
func TestConsumerRun(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	now := time.Date(2027, 1, 1, 0, 10, 0, 0, time.UTC)
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	pub := &publisher{}
	a := &Applier{Records: st, Canceler: st, Holds: st, Topics: kafkaio.DefaultTopics, Now: func() time.Time { return now },
		OptOuts: &optout.Recorder{Topic: kafkaio.DefaultTopics.OptOuts, Pub: pub, Hot: st}}
	var msgs []kafka.Message
	for i, d := range []doc{
		cancelDoc.with("intent_id", "I-R1").with("command_id", "r-1"),
		cancelDoc.with("intent_id", "I-R2").with("command_id", "r-2").with("reason", "because"),
		cancelDoc.with("intent_id", "I-R3").with("command_id", "r-3"),
	} {
		m := command(t, "D-1", d)
		m.Offset = int64(i)
		msgs = append(msgs, m)
	}
	r := &reader{msgs: msgs, pub: pub}
	c := &Consumer{Reader: r, Publisher: pub, Applier: a, Markers: st}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testenv.Eventually(t, 10*time.Second, "three commits", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.committed) == 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// I-R1: 2 records (event, tombstone); the bad one: 1 DLQ record; I-R3: 2.
	if want := []int{2, 3, 5}; r.committed[0] != 0 || r.committed[1] != 1 || r.committed[2] != 2 ||
		r.published[0] != want[0] || r.published[1] != want[1] || r.published[2] != want[2] {
		t.Errorf("commits %v with %v records published, want 0 1 2 after %v", r.committed, r.published, want)
	}
	for id, want := range map[string]status.State{"I-R1": status.Canceled, "I-R3": status.Canceled} {
		if rec, err := st.Get(context.Background(), id); err != nil || rec.State != want {
			t.Errorf("%s: %v %v, want %s", id, rec.State, err, want)
		}
	}
}
