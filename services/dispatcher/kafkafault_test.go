package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// kfHarness is newHarness on a broker started with opts; it returns the
// broker too, for injecting faults.
func kfHarness(t *testing.T, partitions int, opts ...kfake.Opt) (*harness, *kfake.Cluster) {
	t.Helper()
	_, prefix := testenv.Redis(t)
	k := testenv.Kafka(t, partitions, opts...)
	return &harness{
		t: t, brokers: k.ListenAddrs(), redis: testenv.RedisURL(t), prefix: prefix,
		journal: t.TempDir() + "/sandbox.journal", profile: openProfile(t),
	}, k
}

// kfIntents makes n valid intents on channel ch, spread over many debtors.
func kfIntents(seed uint64, n int, ch intent.Channel) []intent.Intent {
	g := sample.New(seed, 40, time.Now())
	out := make([]intent.Intent, n)
	for i := range out {
		in := g.Next()
		in.Channels, in.Fallback = []intent.Channel{ch}, false
		out[i] = in
	}
	return out
}

// kfAlive fails the test at once if the service stopped by itself.
func kfAlive(t *testing.T, r *running) {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for stop
		t.Fatalf("the service stopped by itself: %v", err)
	default:
	}
}

// kfEventually is testenv.Eventually that also fails as soon as the service
// stops by itself.
func kfEventually(t *testing.T, r *running, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, within, what, func() bool {
		kfAlive(t, r)
		return cond()
	})
}

// kfWarm sends one intent through and waits until it is committed: the
// worker has joined the group and owns every partition.
func kfWarm(t *testing.T, h *harness, svc *running, seed uint64) []intent.Intent {
	t.Helper()
	warm := kfIntents(seed, 6, intent.SMS)
	h.produceIntents(warm)
	kfEventually(t, svc, 60*time.Second, "the warm-up intents sent and committed", func() bool {
		return h.statesOf(svc, warm)[status.Sent] == len(warm) && h.allCommitted()
	})
	return warm
}

// kfCommitted returns group dispatcher's committed offset of each partition
// of reminders.intents (-1: none).
func kfCommitted(t *testing.T, h *harness) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(h.brokers...)}
	topic := kafkaio.DefaultTopics.Intents
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("metadata: %v", err)
	}
	var parts []int
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
	}
	got, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "dispatcher", Topics: map[string][]int{topic: parts}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	out := map[int]int64{}
	for _, p := range got.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

// kfEvents reads reminders.status: the transitions as "id/seq" → state,
// and the duplicate events per intent id.
func kfEvents(t *testing.T, h *harness, atLeast int) (transitions map[string]status.State, dups map[string]int) {
	t.Helper()
	transitions, dups = map[string]status.State{}, map[string]int{}
	for _, r := range h.consumeAll(kafkaio.DefaultTopics.Status, atLeast) {
		var ev status.Event
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("status event: %v", err)
		}
		if string(r.Key) != ev.ID {
			t.Errorf("status event keyed %q for intent %q", r.Key, ev.ID)
		}
		if ev.Kind == status.KindDuplicate {
			dups[ev.ID]++
			continue
		}
		k := fmt.Sprintf("%s/%d", ev.ID, ev.Seq)
		if old, ok := transitions[k]; ok && old != ev.State {
			t.Errorf("transition %s published as %s and as %s", k, old, ev.State)
		}
		transitions[k] = ev.State
	}
	return transitions, dups
}

// kfAllPublished checks that every entry of every intent's record is on
// reminders.status, and returns how many entries there were.
func kfAllPublished(t *testing.T, h *harness, svc *running, ins []intent.Intent) int {
	t.Helper()
	var want int
	recs := map[string]status.Record{}
	for _, in := range ins {
		rec, err := svc.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		if err != nil {
			t.Fatalf("record of %s: %v", in.ID, err)
		}
		recs[in.ID] = rec
		want += len(rec.Timeline)
	}
	transitions, _ := kfEvents(t, h, want)
	missing := 0
	for id, rec := range recs {
		for _, e := range rec.Timeline {
			if got, ok := transitions[fmt.Sprintf("%s/%d", id, e.Seq)]; !ok || got != e.State {
				missing++
				if missing <= 5 {
					t.Errorf("intent %s: transition %d (%s) is not on %s", id, e.Seq, e.State, kafkaio.DefaultTopics.Status)
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d recorded transitions are missing from the status topic", missing, want)
	}
	return want
}

// kfSentOnce checks, from the sandbox journal every process of the test
// appends to, that each intent was handed to the provider exactly once.
func kfSentOnce(t *testing.T, h *harness, ins []intent.Intent) {
	t.Helper()
	sends, repeats := journalCounts(t, h.journal)
	bad := 0
	for _, in := range ins {
		if sends[in.ID] != 1 {
			bad++
			if bad <= 5 {
				t.Errorf("intent %s sent %d times, want 1", in.ID, sends[in.ID])
			}
		}
	}
	if bad > 0 || repeats > 0 {
		t.Errorf("%d of %d intents not sent exactly once; %d repeated sends reached the provider", bad, len(ins), repeats)
	}
}

// TestKafkaFaultProduce: the broker refuses writes to reminders.status and
// reminders.deferred for a while. The worker keeps retrying the publication
// and commits nothing meanwhile; once the broker takes writes again, every
// intent is sent exactly once, deferred ones after their retry, and every
// recorded transition is on the status topic.
func TestKafkaFaultProduce(t *testing.T) {
	h, k := kfHarness(t, 3)
	h.vars = map[string]string{"DISPATCHER_RETRY_BASE": "200ms", "DISPATCHER_RETRY_MAX": "500ms"}
	svc := h.start(Roles{Worker: true})
	warm := kfWarm(t, h, svc, 201)
	before := kfCommitted(t, h)

	statusF := k.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: kafkaio.DefaultTopics.Status, Err: kerr.NotLeaderForPartition, Count: -1})
	deferredF := k.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: kafkaio.DefaultTopics.Deferred, Err: kerr.UnknownServerError, Count: -1})
	defer statusF.Remove()
	defer deferredF.Remove()

	sms := kfIntents(202, 40, intent.SMS)
	mails := kfIntents(203, 10, intent.Email)
	// Every e-mail's first send fails retryably: it is deferred, written
	// to reminders.deferred, and re-injected by the scheduler.
	svc.Sandbox.SetFault(intent.Email, sandbox.Fault{Kind: channel.Retryable, Code: "test", Times: len(mails)})
	// E-mails first, alone: what the lanes decide before the broker recovers
	// (and then try to publish) holds e-mails and so deferral records too.
	// The SMS follow once an e-mail was handed to the provider (a lane
	// whose publication fails decides nothing more, and a debtor's next
	// intent waits for the last one's).
	all := append(append([]intent.Intent{}, mails...), sms...)
	h.produceIntents(mails)
	kfEventually(t, svc, 60*time.Second, "an e-mail handed to the provider", func() bool {
		return svc.Sandbox.Stats().Failed > 0
	})
	h.produceIntents(sms)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := statusF.Wait(ctx, 3); err != nil {
		t.Fatalf("the status topic's fault never fired: %v", err)
	}
	if err := deferredF.Wait(ctx, 3); err != nil {
		t.Fatalf("the deferred topic's fault never fired (%d hits on the status topic): %v", statusF.Hits(), err)
	}
	// A lane publishes what it decided before it decides more, so how many
	// of the intents are decided before the broker recovers depends on how
	// the fetches split them: at least the e-mails are.
	kfEventually(t, svc, 60*time.Second, "intents handed to the sandbox while the broker refuses writes", func() bool {
		st := svc.Sandbox.Stats()
		return st.Sent-int64(len(warm))+st.Failed > 0
	})
	// Decided, but not published: nothing may be committed.
	if err := statusF.Wait(ctx, statusF.Hits()+3); err != nil {
		t.Fatal(err)
	}
	if got := kfCommitted(t, h); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("offsets committed while the status events could not be written: %v, before %v", got, before)
	}
	transitions, _ := kfEvents(t, h, 0)
	for _, in := range all {
		for seq := 1; seq <= 3; seq++ {
			if _, ok := transitions[fmt.Sprintf("%s/%d", in.ID, seq)]; ok {
				t.Errorf("a transition of %s is on the status topic although the broker refused every write", in.ID)
			}
		}
	}
	kfAlive(t, svc)
	st := svc.Sandbox.Stats()
	t.Logf("while the broker refused writes: %d sent, %d failed (deferred) of %d intents", st.Sent-int64(len(warm)), st.Failed, len(all))

	statusF.Remove()
	deferredF.Remove()
	t.Logf("fault hits: produce to %s %d, to %s %d", kafkaio.DefaultTopics.Status, statusF.Hits(), kafkaio.DefaultTopics.Deferred, deferredF.Hits())
	kfEventually(t, svc, 90*time.Second, "every intent sent and committed", func() bool {
		return h.statesOf(svc, all)[status.Sent] == len(all) && h.allCommitted()
	})

	kfSentOnce(t, h, append(all, warm...))
	entries := kfAllPublished(t, h, svc, all)
	var deferrals int
	for _, r := range h.consumeAll(kafkaio.DefaultTopics.Deferred, len(mails)) {
		if len(r.Value) > 0 {
			deferrals++
		}
	}
	if deferrals < len(mails) {
		t.Errorf("%d deferral records on %s, want one per e-mail (%d)", deferrals, kafkaio.DefaultTopics.Deferred, len(mails))
	}
	for _, in := range mails {
		rec, _ := svc.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		// Deferred by its failed send (retry), or — once the failures had
		// opened the e-mail provider's breaker — at the gate (provider_down).
		deferred := false
		for _, e := range rec.Timeline {
			deferred = deferred || e.State == status.Deferred && (e.Reason == "retry" || e.Reason == "provider_down")
		}
		if !deferred || rec.State != status.Sent {
			t.Errorf("e-mail %s: timeline %+v, want deferred (retry or provider_down), then sent", in.ID, rec.Timeline)
		}
	}
	if n := scrape(t, svc.base)["dispatcher_infrastructure_errors_total"]; n == 0 {
		t.Errorf("no infrastructure error counted while the broker refused writes")
	}
	t.Logf("%d intents, %d transitions on the status topic, %d deferral records", len(all), entries, deferrals)
}

// TestKafkaFaultCommit: the group coordinator refuses every offset commit
// while a worker decides a batch of intents. The worker is stopped, the
// coordinator recovers, and the next worker gets every intent again: each
// is recognised as decided already and none is sent a second time.
func TestKafkaFaultCommit(t *testing.T) {
	h, k := kfHarness(t, 3)
	a := h.start(Roles{Worker: true})
	warm := kfWarm(t, h, a, 301)

	commitF := k.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: "dispatcher", Err: kerr.UnknownServerError, Count: -1})
	defer commitF.Remove()
	ins := kfIntents(302, 60, intent.SMS)
	h.produceIntents(ins)
	kfEventually(t, a, 60*time.Second, "every intent sent and marked for commit", func() bool {
		return h.statesOf(a, ins)[status.Sent] == len(ins) &&
			scrape(t, a.base)["dispatcher_intents_committed_total"] >= float64(len(ins)+len(warm))
	})
	// A commit tried after the last intent was done, and refused.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := commitF.Wait(ctx, commitF.Hits()+2); err != nil {
		t.Fatalf("no offset commit refused after the intents were decided (%d hits): %v", commitF.Hits(), err)
	}
	if h.allCommitted() {
		t.Fatal("every offset committed although the coordinator refused every commit")
	}
	kfAlive(t, a)
	a.stop(t) // its last commit is refused too
	hits := commitF.Hits()
	commitF.Remove()
	t.Logf("fault hits: offset commits refused %d", hits)
	if hits == 0 {
		t.Fatal("the commit fault never fired")
	}

	b := h.start(Roles{Worker: true})
	kfEventually(t, b, 60*time.Second, "every intent committed by the second worker", h.allCommitted)
	m := scrape(t, b.base)
	dupMetric := m[`dispatcher_decisions_total{reason="duplicate",state="suppressed"}`]
	t.Logf("second worker: %v intents consumed, %v recognised as duplicates, %v sent", m["dispatcher_intents_consumed_total"], dupMetric, b.Sandbox.Stats().Sent)
	if dupMetric != float64(len(ins)) {
		t.Errorf("the second worker recognised %v redelivered intents as duplicates, want %d", dupMetric, len(ins))
	}
	if st := b.Sandbox.Stats(); st.Sent != 0 || st.Repeats != 0 {
		t.Errorf("the second worker's sandbox: %+v, want nothing sent or repeated", st)
	}
	kfSentOnce(t, h, append(ins, warm...))
	_, dups := kfEvents(t, h, len(ins)*3)
	for _, in := range ins {
		if dups[in.ID] != 1 {
			t.Errorf("intent %s: %d duplicate events, want 1", in.ID, dups[in.ID])
		}
		rec, _ := b.Store().GetFor(context.Background(), in.DebtorID, in.ID)
		if rec.State != status.Sent || len(rec.Timeline) != 2 {
			t.Errorf("intent %s: %s with %d entries, want sent after sending", in.ID, rec.State, len(rec.Timeline))
		}
	}
	kfAllPublished(t, h, b, ins)
}

// kfDied reports whether the service stopped by itself, and with what.
func kfDied(r *running) (error, bool) {
	select {
	case err := <-r.done:
		r.done <- err
		return err, true
	default:
		return nil, false
	}
}

// TestKafkaFaultConsume: fetches of reminders.intents fail, or the group
// coordinator fails FindCoordinator, JoinGroup and Heartbeat, for a while.
// The worker keeps going (a fetch error is retried, never the end of the
// process) and drains every intent, each sent once.
func TestKafkaFaultConsume(t *testing.T) {
	fetch := func(e *kerr.Error) kfake.Fault {
		return kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: kafkaio.DefaultTopics.Intents, Err: e, Count: -1}
	}
	group := func(key kmsg.Key, e *kerr.Error, count int) kfake.Fault {
		return kfake.Fault{Keys: []kmsg.Key{key}, Group: "dispatcher", Err: e, Count: count}
	}
	for _, tc := range []struct {
		name   string
		faults []kfake.Fault
		need   []int         // hits each fault must reach before it is removed
		hold   time.Duration // and how long at least they last
		fetch  bool          // fetches fail: nothing new may be sent meanwhile
	}{
		{"fetch: not leader", []kfake.Fault{fetch(kerr.NotLeaderForPartition)}, []int{6}, 0, true},
		{"fetch: unknown server error", []kfake.Fault{fetch(kerr.UnknownServerError)}, []int{6}, 0, true},
		{"coordinator: a heartbeat and one rejoin refused", []kfake.Fault{
			group(kmsg.Heartbeat, kerr.NotCoordinator, 1),
			group(kmsg.JoinGroup, kerr.CoordinatorNotAvailable, 1),
		}, []int{1, 1}, 0, false},
		{"coordinator: not available", []kfake.Fault{
			group(kmsg.Heartbeat, kerr.CoordinatorNotAvailable, -1),
			group(kmsg.FindCoordinator, kerr.CoordinatorNotAvailable, -1),
		}, []int{1, 3}, 20 * time.Second, false},
		{"coordinator: moved and loading", []kfake.Fault{
			group(kmsg.Heartbeat, kerr.NotCoordinator, -1),
			group(kmsg.JoinGroup, kerr.CoordinatorLoadInProgress, -1),
		}, []int{1, 3}, 20 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, k := kfHarness(t, 3)
			svc := h.start(Roles{Worker: true})
			warm := kfWarm(t, h, svc, 401)

			handles := make([]*kfake.FaultHandle, len(tc.faults))
			for i, f := range tc.faults {
				handles[i] = k.Fault(f)
				defer handles[i].Remove()
			}
			ins := kfIntents(402, 60, intent.SMS)
			if tc.fetch {
				// A fetch already waiting at the broker when the fault was
				// put in answers within the reader's MaxWait (250ms):
				// produce once the next ones are refused.
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				err := handles[0].Wait(ctx, 1)
				cancel()
				if err != nil {
					t.Fatalf("no fetch refused: %v", err)
				}
				time.Sleep(time.Second)
			}
			h.produceIntents(ins)

			since := time.Now()
			deadline := since.Add(90 * time.Second)
			var stopped error
			for {
				err, dead := kfDied(svc)
				if dead {
					stopped = err
					break
				}
				done := time.Since(since) >= tc.hold
				for i, f := range handles {
					done = done && f.Hits() >= tc.need[i]
				}
				if done {
					break
				}
				if time.Now().After(deadline) {
					var hits []int
					for _, f := range handles {
						hits = append(hits, f.Hits())
					}
					t.Fatalf("the faults fired %v times in 90s, want %v", hits, tc.need)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.fetch && stopped == nil {
				if n := h.statesOf(svc, ins)[status.Sent]; n != 0 {
					t.Errorf("%d intents sent although every fetch of the topic was refused", n)
				}
			}
			var hits []int
			for _, f := range handles {
				f.Remove()
				hits = append(hits, f.Hits())
			}
			t.Logf("fault hits %v (wanted at least %v)", hits, tc.need)
			for i, n := range hits {
				if n == 0 {
					t.Errorf("fault %d (%v) never fired", i, tc.faults[i].Keys)
				}
			}

			if stopped != nil {
				t.Fatalf("the service stopped by itself: %v", stopped)
			}
			kfEventually(t, svc, 90*time.Second, "every intent sent and committed after the faults", func() bool {
				return h.statesOf(svc, ins)[status.Sent] == len(ins) && h.allCommitted()
			})
			kfSentOnce(t, h, append(ins, warm...))
			kfAllPublished(t, h, svc, ins)
		})
	}
}
