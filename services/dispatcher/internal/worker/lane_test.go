package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/ratelimit"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// feedReader hands out messages from a list (then waits) and records
// commits, like a consumer group's reader.
type feedReader struct {
	mu        sync.Mutex
	msgs      []kafka.Message
	next      int
	committed map[int]int64 // partition → the offset after the last committed
	commits   []int64       // every commit's offset, in order
	gen       func(i int) kafka.Message
	limit     int // with gen: how many to hand out
}

func (r *feedReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	for {
		r.mu.Lock()
		if r.gen != nil && r.next < r.limit {
			m := r.gen(r.next)
			r.next++
			r.mu.Unlock()
			return m, nil
		}
		if r.next < len(r.msgs) {
			m := r.msgs[r.next]
			r.next++
			r.mu.Unlock()
			return m, nil
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return kafka.Message{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (r *feedReader) CommitMessages(_ context.Context, ms ...kafka.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.committed == nil {
		r.committed = map[int]int64{}
	}
	for _, m := range ms {
		if m.Offset+1 > r.committed[m.Partition] {
			r.committed[m.Partition] = m.Offset + 1
		}
		r.commits = append(r.commits, m.Offset)
	}
	return nil
}

func (r *feedReader) fetched() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

func (r *feedReader) committedAt(p int) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.committed[p]
}

// collector keeps what the worker publishes.
type collector struct {
	mu   sync.Mutex
	recs []kafka.Message
}

func (c *collector) WriteMessages(_ context.Context, ms ...kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, ms...)
	return nil
}

// finals returns each intent's last published state/reason.
func (c *collector) finals(t *testing.T) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for _, ev := range events(t, c.recs) {
		if ev.Kind == status.KindTransition {
			out[ev.ID] = string(ev.State) + "/" + ev.Reason
		}
	}
	return out
}

// partitionOf lays messages out on one partition at consecutive offsets.
func onPartition(p int, msgs ...kafka.Message) []kafka.Message {
	for i := range msgs {
		msgs[i].Partition, msgs[i].Offset = p, int64(i)
	}
	return msgs
}

// runLanes runs the worker over r until every message r hands out is
// committed (or the deadline), then stops it.
func runLanes(t *testing.T, w *Worker, r *feedReader, pub *collector, total int) {
	t.Helper()
	w.Reader, w.Publisher = r, pub
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int64
		r.mu.Lock()
		for _, c := range r.committed {
			n += c
		}
		r.mu.Unlock()
		if n >= int64(total) {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("committed %d of %d messages", n, total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// gatedSender answers after its latency, and counts calls in flight per
// channel and per debtor, keeping each call's start and end order.
type gatedSender struct {
	latency  time.Duration
	block    chan struct{} // non-nil: calls wait for it to close
	mu       sync.Mutex
	inFlight map[string]int // key → calls now
	peak     map[string]int
	order    []string // "start:<id>" / "end:<id>"
	calls    atomic.Int64
}

func newGatedSender(latency time.Duration) *gatedSender {
	return &gatedSender{latency: latency, inFlight: map[string]int{}, peak: map[string]int{}}
}

func (g *gatedSender) track(keys []string, d int, ev string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		g.inFlight[k] += d
		g.peak[k] = max(g.peak[k], g.inFlight[k])
	}
	g.order = append(g.order, ev)
}

func (g *gatedSender) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	g.calls.Add(1)
	keys := []string{"all", "ch:" + string(m.Channel), "debtor:" + m.DebtorID}
	g.track(keys, 1, "start:"+m.IntentID)
	defer g.track(keys, -1, "end:"+m.IntentID)
	if g.block != nil {
		select {
		case <-g.block:
		case <-ctx.Done():
			return channel.Receipt{}, &channel.Error{Kind: channel.Unknown, Err: ctx.Err()}
		}
	}
	if g.latency > 0 {
		time.Sleep(g.latency)
	}
	return channel.Receipt{Provider: "gated", ProviderID: "g-" + m.IntentID}, nil
}

func (g *gatedSender) Idempotent() bool { return true }
func (g *gatedSender) Name() string     { return "gated" }

func (g *gatedSender) peakOf(k string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak[k]
}

// noonIntent is an SMS (or ch) intent of its own debtor, at local noon of
// the fixture's day.
func noonIntent(id, debtor string, ch intent.Channel) intent.Intent {
	in := sampleIntent(id)
	in.DebtorID = debtor
	in.Channels = []intent.Channel{ch}
	in.ExpiresAt = nil
	switch ch {
	case intent.Email:
		in.To = intent.Address{Email: "d@example.cn"}
	case intent.SMS:
		in.To = intent.Address{Phone: "+8613800138000"}
	}
	return in
}

func keyed(t *testing.T, in intent.Intent) kafka.Message {
	m := msgOf(t, in)
	m.Key = []byte(in.DebtorID)
	return m
}

// A lane keeps many sends in flight — up to MaxInFlight, whatever the
// partition count — and never more than a channel's own limit.
func TestLaneSendsConcurrentlyWithinLimits(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC) // noon in Shanghai
	g := newGatedSender(20 * time.Millisecond)
	for _, ch := range intent.Channels {
		f.w.Senders[ch] = g
	}
	w, err := New(Config{Owner: "w1", MaxInFlight: 8, ChannelLimits: map[intent.Channel]int{intent.SMS: 3}}, f.w.Deps)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i := range 60 {
		ch := intent.Email
		if i%2 == 0 {
			ch = intent.SMS
		}
		msgs = append(msgs, keyed(t, noonIntent(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i), ch)))
	}
	r := &feedReader{msgs: onPartition(0, msgs...)}
	pub := &collector{}
	runLanes(t, w, r, pub, len(msgs))
	sent := 0
	for _, s := range pub.finals(t) {
		if s == "sent/" {
			sent++
		}
	}
	if sent != 60 {
		t.Errorf("%d of 60 sent: %v", sent, pub.finals(t))
	}
	if p := g.peakOf("all"); p > 8 || p < 4 {
		t.Errorf("peak in flight %d, want between 4 and MaxInFlight 8 (one partition)", p)
	}
	if p := g.peakOf("ch:sms"); p > 3 {
		t.Errorf("peak SMS calls in flight %d, want at most its limit 3", p)
	}
	if p := g.peakOf("ch:email"); p < 4 {
		t.Errorf("peak e-mail calls in flight %d: e-mail is limited only by MaxInFlight", p)
	}
}

// A debtor's intents are decided one after another in offset order; other
// debtors' go meanwhile.
func TestLaneKeepsADebtorsOrder(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	g := newGatedSender(15 * time.Millisecond)
	for _, ch := range intent.Channels {
		f.w.Senders[ch] = g
	}
	// cn-bank: a debtor's SMS are an hour apart; e-mail has no gap, so a
	// debtor's e-mails are all sent, in order.
	var msgs []kafka.Message
	for i := range 5 {
		msgs = append(msgs, keyed(t, noonIntent(fmt.Sprintf("A-%d", i), "D-A", intent.Email)))
		msgs = append(msgs, keyed(t, noonIntent(fmt.Sprintf("B-%d", i), fmt.Sprintf("D-B%d", i), intent.Email)))
	}
	r := &feedReader{msgs: onPartition(0, msgs...)}
	pub := &collector{}
	runLanes(t, f.w, r, pub, len(msgs))
	// D-A's intents reach their decisions in offset order: all of A-0's
	// events (its send) before any of A-1's (deferred by the one-hour gap,
	// which it can only be if A-0's send was recorded first), and so on.
	var as []string
	for _, ev := range events(t, pub.recs) {
		if strings.HasPrefix(ev.ID, "A-") && (len(as) == 0 || as[len(as)-1] != ev.ID) {
			as = append(as, ev.ID)
		}
	}
	if want := []string{"A-0", "A-1", "A-2", "A-3", "A-4"}; !equal(as, want) {
		t.Errorf("D-A's events by intent %v, want %v", as, want)
	}
	finals := pub.finals(t)
	if finals["A-0"] != "sent/" {
		t.Errorf("A-0 %s, want sent", finals["A-0"])
	}
	for i := 1; i < 5; i++ {
		if s := finals[fmt.Sprintf("A-%d", i)]; s != "deferred/min_gap" {
			t.Errorf("A-%d %s, want deferred/min_gap after A-0's send", i, s)
		}
	}
	if p := g.peakOf("all"); p < 2 {
		t.Errorf("peak in flight %d: other debtors should go while D-A waits its turn", p)
	}
}

// The committed offset never passes an intent whose decision is not
// recorded: a slow send holds the watermark while later intents finish.
func TestLaneCommitsTheWatermark(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	slow, fast := newGatedSender(0), newGatedSender(0)
	slow.block = make(chan struct{})
	f.w.Senders[intent.SMS], f.w.Senders[intent.Email] = slow, fast
	msgs := []kafka.Message{keyed(t, noonIntent("I-slow", "D-0", intent.SMS))}
	for i := range 20 {
		msgs = append(msgs, keyed(t, noonIntent(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i+1), intent.Email)))
	}
	r := &feedReader{msgs: onPartition(0, msgs...)}
	pub := &collector{}
	f.w.Reader, f.w.Publisher = r, pub
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Run(ctx) }()
	for fast.calls.Load() < 20 {
		time.Sleep(5 * time.Millisecond)
	}
	// Wait until the 20 fast ones are published.
	for deadline := time.Now().Add(10 * time.Second); len(pub.finals(t)) < 20 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if c := r.committedAt(0); c != 0 {
		t.Errorf("committed up to %d while offset 0 is still sending", c)
	}
	close(slow.block)
	for deadline := time.Now().Add(10 * time.Second); r.committedAt(0) < 21 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if c := r.committedAt(0); c != 21 {
		t.Errorf("committed up to %d after the slow send ended, want 21", c)
	}
}

// A rate-limited provider holds only its own share: with SMS held to 1 a
// second, the e-mails of the same partition are all sent, and once the
// waiting SMS fill the lane (so that it would stop reading e-mails) those
// that cannot get the rate in time are deferred as provider_busy — not
// counted, not failed, the breaker untouched.
func TestLaneRateLimitedChannelDoesNotHoldOthers(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	sms, mail := newGatedSender(0), newGatedSender(5*time.Millisecond)
	rdb, prefix := testenv.Redis(t)
	f.w.Senders[intent.SMS] = ratelimit.Wrap(sms, ratelimit.New(rdb, prefix, "sms", 1, time.Second))
	f.w.Senders[intent.Email] = mail
	w, err := New(Config{Owner: "w1", AdmitWait: 300 * time.Millisecond, LaneQueue: 32}, f.w.Deps)
	if err != nil {
		t.Fatal(err)
	}
	counts := runMixed(t, w, 200, 4)
	t.Logf("outcomes: %v", counts)
	if counts["email sent/"] != 150 {
		t.Errorf("%d of 150 e-mails sent behind a rate-limited SMS provider", counts["email sent/"])
	}
	if counts["sms sent/"]+counts["sms deferred/provider_busy"] != 50 || counts["sms deferred/provider_busy"] == 0 {
		t.Errorf("SMS outcomes %v: want sent within the rate, the rest deferred provider_busy", counts)
	}
	if n := sms.calls.Load(); n != int64(counts["sms sent/"]) {
		t.Errorf("SMS provider called %d times for %d sent", n, counts["sms sent/"])
	}
}

// runMixed runs n intents of their own debtors through one lane, every
// every-th an SMS and the others e-mails, and counts the outcomes by
// "channel state/reason".
func runMixed(t *testing.T, w *Worker, n, every int) map[string]int {
	t.Helper()
	var msgs []kafka.Message
	chOf := func(i int) intent.Channel {
		if i%every == 0 {
			return intent.SMS
		}
		return intent.Email
	}
	for i := range n {
		msgs = append(msgs, keyed(t, noonIntent(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i), chOf(i))))
	}
	r, pub := &feedReader{msgs: onPartition(0, msgs...)}, &collector{}
	runLanes(t, w, r, pub, len(msgs))
	counts := map[string]int{}
	for id, st := range pub.finals(t) {
		var i int
		fmt.Sscanf(id, "I-%d", &i)
		counts[string(chOf(i))+" "+st]++
	}
	return counts
}

// A slow provider at its concurrency holds only its own share too: SMS at
// 2 calls of 200 ms at once, e-mail free, one small lane.
func TestLaneSlowChannelDoesNotHoldOthers(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	sms, mail := newGatedSender(200*time.Millisecond), newGatedSender(0)
	f.w.Senders[intent.SMS], f.w.Senders[intent.Email] = sms, mail
	w, err := New(Config{Owner: "w1", AdmitWait: 50 * time.Millisecond, LaneQueue: 16,
		ChannelLimits: map[intent.Channel]int{intent.SMS: 2}}, f.w.Deps)
	if err != nil {
		t.Fatal(err)
	}
	counts := runMixed(t, w, 120, 3)
	t.Logf("outcomes: %v", counts)
	if counts["email sent/"] != 80 {
		t.Errorf("%d of 80 e-mails sent behind a slow SMS provider", counts["email sent/"])
	}
	if counts["sms sent/"]+counts["sms deferred/provider_busy"] != 40 || counts["sms deferred/provider_busy"] == 0 {
		t.Errorf("SMS outcomes %v: want sent at the provider's pace, the rest deferred provider_busy", counts)
	}
	if p := sms.peakOf("ch:sms"); p > 2 {
		t.Errorf("%d SMS calls at once, want at most 2", p)
	}
}

// A backlog of one channel behind its provider's concurrency just waits:
// nothing else is held up, so nothing is deferred as provider_busy.
func TestLaneBacklogOfOneChannelWaits(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	g := newGatedSender(10 * time.Millisecond)
	f.w.Senders[intent.SMS] = g
	w, err := New(Config{Owner: "w1", AdmitWait: 20 * time.Millisecond, LaneQueue: 16,
		ChannelLimits: map[intent.Channel]int{intent.SMS: 2}}, f.w.Deps)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i := range 100 {
		msgs = append(msgs, keyed(t, noonIntent(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i), intent.SMS)))
	}
	r, pub := &feedReader{msgs: onPartition(0, msgs...)}, &collector{}
	runLanes(t, w, r, pub, len(msgs))
	counts := map[string]int{}
	for _, s := range pub.finals(t) {
		counts[s]++
	}
	if counts["sent/"] != 100 {
		t.Errorf("outcomes %v, want all 100 sent", counts)
	}
	if p := g.peakOf("ch:sms"); p > 2 {
		t.Errorf("%d SMS calls at once, want at most 2", p)
	}
}

// An intent waiting for a slot has not passed the gate: an opt-out recorded
// meanwhile stops it.
func TestLaneGatesOnlyAdmittedIntents(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	g := newGatedSender(0)
	g.block = make(chan struct{})
	for _, ch := range intent.Channels {
		f.w.Senders[ch] = g
	}
	w, err := New(Config{Owner: "w1", MaxInFlight: 1}, f.w.Deps)
	if err != nil {
		t.Fatal(err)
	}
	first := keyed(t, noonIntent("I-first", "D-9", intent.Email))
	waiting := keyed(t, noonIntent("I-waiting", "D-1001", intent.SMS))
	waiting.Partition, waiting.Offset = 0, 1
	r := &feedReader{msgs: onPartition(0, first)}
	pub := &collector{}
	w.Reader, w.Publisher = r, pub
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for g.calls.Load() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, waiting) // arrives while the first holds the only slot
	r.mu.Unlock()
	for r.fetched() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the second is waiting for the only slot
	f.optOut(t, "sms")
	close(g.block)
	for deadline := time.Now().Add(10 * time.Second); r.committedAt(0) < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if s := pub.finals(t)["I-waiting"]; s != "suppressed/opted_out" {
		t.Errorf("intent that waited for a slot while its debtor opted out: %q, want suppressed/opted_out", s)
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("provider called %d times, want 1", n)
	}
}

// Backpressure: behind a provider that does not answer, the worker stops
// fetching once its lanes are full; what it holds stays bounded while
// 100,000 intents wait, and so does its heap.
func TestLaneBackpressure(t *testing.T) {
	f := newFixture(t, true)
	f.now = time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	g := newGatedSender(200 * time.Millisecond)
	g.block = make(chan struct{})
	for _, ch := range intent.Channels {
		f.w.Senders[ch] = g
	}
	const queue, buffer = 256, 64
	w, err := New(Config{Owner: "w1", MaxInFlight: 64, LaneQueue: queue, LaneBuffer: buffer, SendTimeout: time.Hour}, f.w.Deps)
	if err != nil {
		t.Fatal(err)
	}
	r := &feedReader{limit: 100000, gen: func(i int) kafka.Message {
		b, _ := json.Marshal(noonIntent(fmt.Sprintf("I-%d", i), fmt.Sprintf("D-%d", i), intent.Email))
		return kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Partition: i % 4, Offset: int64(i / 4),
			Key: fmt.Appendf(nil, "D-%d", i), Value: b}
	}}
	w.Reader, w.Publisher = r, &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { close(g.block); cancel(); <-done }()
	// Wait until fetching stops.
	last, still := -1, 0
	for still < 20 {
		time.Sleep(20 * time.Millisecond)
		if n := r.fetched(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	time.Sleep(500 * time.Millisecond)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	bound := 4*(queue+buffer) + 2 // four partitions: lane queues, lane buffers, one in the fetch loop's hand
	t.Logf("fetched %d of 100000 behind a provider that does not answer (bound %d); heap %d → %d KB; %d in flight",
		last, bound, before.HeapAlloc>>10, after.HeapAlloc>>10, g.peakOf("all"))
	if last > bound {
		t.Errorf("fetched %d messages while the provider held every call, want at most %d", last, bound)
	}
	if last < queue {
		t.Errorf("fetched only %d: the lanes should fill to their queue", last)
	}
	if p := g.peakOf("all"); p != 64 {
		t.Errorf("%d calls in flight, want MaxInFlight 64", p)
	}
	if after.HeapAlloc > before.HeapAlloc+16<<20 {
		t.Errorf("heap grew from %d to %d KB while waiting", before.HeapAlloc>>10, after.HeapAlloc>>10)
	}
}
