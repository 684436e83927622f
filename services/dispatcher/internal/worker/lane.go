package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
)

// A lane runs one partition's intents through the pipeline.
//
// Ordering: a debtor's intents (one key, one partition) are decided one
// after another in offset order — the caps and gaps rely on it — while
// intents of different debtors go concurrently.
//
// Concurrency: an intent that needs a provider is first admitted — it takes
// a slot of its channel (DISPATCHER_<CHANNEL>_CONCURRENCY), waits for the
// provider's shared rate if it has one, then takes one of the worker's
// in-flight slots (DISPATCHER_MAX_IN_FLIGHT) — and only then passes the
// gate, so a claimed intent is sent at once: an opt-out recorded after the
// gate's answer can only miss a send that was already starting. A channel
// whose slot or rate is not had within AdmitWait is treated by the gate as
// busy (the intent falls back or is deferred, reason provider_busy), so a
// slow or rate-limited provider holds only its own share and the partition's
// other intents go on.
//
// Offsets: the lane commits up to the last intent before the lowest one that
// has not reached a recorded, published decision (the watermark). A crash
// redelivers the rest; intent ids make that harmless.
//
// Backpressure: a lane holds at most LaneQueue intents not yet committed,
// of which at most MaxInFlight undecided (a decided one keeps only its
// offset until the watermark passes it); when it is full it stops reading, the worker stops fetching for it, and
// memory stays bounded however slow the providers are.
type lane struct {
	w        *Worker
	stopping context.Context // ends intake
	work     context.Context // ends in-flight work (the drain time after stopping)
	in       <-chan kafka.Message
	reports  chan *job // from job goroutines: admitted, or done with the provider

	queue    []*job          // not committed, in offset order
	last     map[string]*job // debtor → its latest job in queue
	ends     []*job          // to decide without the gate
	admitted []*job          // holding slots, to gate
	called   []*job          // the provider answered: to record
	parked   []*job          // to start again at retryAt
	out      []kafka.Message // to publish this round
	live     int             // job goroutines running
	closed   bool            // in was closed
	hold     time.Time       // a whole call failed: the next Redis stage waits until then
	tries    int             // whole calls failed in a row

	// Read by job goroutines: whether waiting for a channel holds others up.
	open     int                              // intents in queue not yet decided
	full     atomic.Bool                      // intake stopped (isFull)
	byChan   map[intent.Channel]*atomic.Int64 // uncommitted intents by first channel
	byChanMu sync.Mutex
}

// isFull reports whether the lane takes no more: LaneQueue uncommitted,
// or MaxInFlight undecided.
func (l *lane) isFull() bool {
	return len(l.queue) >= l.w.cfg.LaneQueue || l.open >= l.w.cfg.MaxInFlight
}

// heldUp reports whether an intent waiting for ch holds up others: the
// lane is full, so nothing more is read until its oldest intents are
// decided, and some of what it holds is for other channels.
func (l *lane) heldUp(ch intent.Channel) bool {
	if !l.full.Load() {
		return false
	}
	for c, n := range l.counts() {
		if c != ch && n.Load() > 0 {
			return true
		}
	}
	return false
}

func (l *lane) counts() map[intent.Channel]*atomic.Int64 {
	l.byChanMu.Lock()
	defer l.byChanMu.Unlock()
	return l.byChan
}

// channelOf is the channel an intent is admitted for ("" none).
func channelOf(j *job) intent.Channel {
	if j.needsGate() && len(j.in.Channels) > 0 {
		return j.in.Channels[0]
	}
	return ""
}

// stage is where a job's goroutine reports from.
type stage int

const (
	stageAdmitted stage = iota // holds its slots; waits for the gate
	stageCalled                // the provider answered (or no call was made)
	stageGone                  // gave its slots back without a call
)

func newLane(w *Worker, stopping, work context.Context, in <-chan kafka.Message) *lane {
	l := &lane{w: w, stopping: stopping, work: work, in: in, reports: make(chan *job, 64), last: map[string]*job{},
		byChan: map[intent.Channel]*atomic.Int64{}}
	for _, ch := range intent.Channels {
		l.byChan[ch] = new(atomic.Int64)
	}
	return l
}

// run decides the partition's messages until intake stops and what is in
// flight has been recorded and published.
func (l *lane) run() {
	for l.wait() {
		l.round()
	}
	// Stopping: every goroutine has reported; publish and commit what was
	// decided.
	l.flush()
}

// wait blocks until there is something to do, and takes in what arrived.
// It returns false once the lane has nothing left to do.
func (l *lane) wait() bool {
	stopping := l.stopping.Err() != nil
	if stopping {
		// No more gating: admitted jobs give their slots back.
		for _, j := range l.admitted {
			j.proceed <- false
		}
		l.admitted = l.admitted[:0]
		if l.live == 0 && len(l.called) == 0 {
			return false
		}
	} else if l.closed && len(l.queue) == 0 {
		return false
	}
	var in <-chan kafka.Message
	if !stopping && !l.closed && !l.isFull() {
		in = l.in
	}
	now := l.w.Now()
	ready := len(l.called) > 0 || !stopping && (len(l.ends) > 0 || len(l.admitted) > 0) && !l.w.lost.Load()
	var wake <-chan time.Time
	if !ready || now.Before(l.hold) {
		at := l.hold
		for _, j := range l.parked {
			if at.IsZero() || j.retryAt.Before(at) {
				at = j.retryAt
			}
		}
		if !at.IsZero() {
			t := time.NewTimer(max(at.Sub(now), time.Millisecond))
			defer t.Stop()
			wake = t.C
		}
		var stop <-chan struct{}
		if !stopping {
			stop = l.stopping.Done()
		}
		var rebuilt <-chan struct{}
		if l.w.lost.Load() {
			rebuilt = l.w.rebuilt()
		}
		select {
		case m, ok := <-in:
			l.take(m, ok)
		case j := <-l.reports:
			l.report(j)
		case <-wake:
		case <-stop:
		case <-rebuilt:
		case <-l.work.Done():
			return false
		}
	}
	// Take in whatever else is waiting, without blocking.
	for n := 0; n < l.w.cfg.MaxBatch; n++ {
		select {
		case j := <-l.reports:
			l.report(j)
			continue
		default:
		}
		if in == nil || l.isFull() {
			break
		}
		select {
		case m, ok := <-in:
			l.take(m, ok)
			continue
		default:
		}
		break
	}
	// Parked jobs whose time came start again.
	now = l.w.Now()
	kept := l.parked[:0]
	for _, j := range l.parked {
		if now.Before(j.retryAt) || stopping {
			kept = append(kept, j)
			continue
		}
		l.start(j)
	}
	l.parked = kept
	return true
}

// take adds a message to the lane.
func (l *lane) take(m kafka.Message, ok bool) {
	if !ok {
		l.closed = true
		return
	}
	j := l.w.prepare(m)
	l.queue = append(l.queue, j)
	l.open++
	j.ch = channelOf(j)
	if n := l.byChan[j.ch]; n != nil {
		n.Add(1)
	}
	l.full.Store(l.isFull())
	l.w.queued.Add(1)
	l.w.Metrics.Queued.Inc()
	if prev := l.last[j.key]; prev != nil && j.key != "" {
		prev.next = j // decided after prev
	} else {
		l.start(j)
	}
	if j.key != "" {
		l.last[j.key] = j
	}
}

// start sends a job on its way: decided alone, or admitted by its own
// goroutine.
func (l *lane) start(j *job) {
	j.err = nil
	if !j.needsGate() {
		l.ends = append(l.ends, j)
		return
	}
	l.live++
	j.proceed = make(chan bool, 1)
	go l.w.carry(l, j)
}

// report takes a job back from its goroutine.
func (l *lane) report(j *job) {
	switch j.stage {
	case stageAdmitted:
		l.admitted = append(l.admitted, j)
	case stageCalled:
		l.live--
		l.called = append(l.called, j)
	case stageGone:
		l.live--
		if j.err != nil || !j.retryAt.IsZero() {
			l.parked = append(l.parked, j)
		}
	}
}

// round runs the Redis stages over what is ready, publishes, and commits.
func (l *lane) round() {
	w := l.w
	var decided []*job
	canDecide := !w.lost.Load() && !l.w.Now().Before(l.hold) && l.stopping.Err() == nil
	if canDecide && len(l.ends) > 0 {
		ends := l.ends
		l.ends = nil
		for _, j := range ends {
			w.state.RLock()
			w.decideEnd(l.work, j)
			w.state.RUnlock()
			if j.done {
				decided = append(decided, j)
			} else {
				l.failed(j, false)
			}
		}
	}
	if canDecide && len(l.admitted) > 0 {
		batch := l.admitted[:min(len(l.admitted), w.cfg.MaxBatch)]
		w.state.RLock()
		err := w.gateJobs(l.work, batch)
		w.state.RUnlock()
		if err != nil {
			l.wholeFailed(err) // the batch stays admitted and is gated again
		} else {
			l.tries = 0
			for _, j := range batch {
				switch {
				case j.done:
					j.proceed <- false
					decided = append(decided, j)
				case j.err != nil:
					l.failed(j, true)
				default:
					w.unsettled.Add(1)
					j.proceed <- true
				}
			}
			l.admitted = append(l.admitted[:0], l.admitted[len(batch):]...)
		}
	}
	if len(l.called) > 0 && !l.w.Now().Before(l.hold) {
		batch := l.called[:min(len(l.called), w.cfg.MaxBatch)]
		w.state.RLock()
		err := w.finishJobs(l.work, batch)
		w.state.RUnlock()
		if err != nil {
			l.wholeFailed(err)
		} else {
			for _, j := range batch {
				if j.done {
					decided = append(decided, j)
					continue
				}
				// Not recordable as planned: start over at the gate, which
				// finds the claim and resolves it.
				w.unsettled.Add(-1)
				j.plan = nil
				l.failed(j, false)
			}
			l.called = append(l.called[:0], l.called[len(batch):]...)
		}
	}
	for _, j := range decided {
		l.out = append(l.out, j.recs...)
	}
	if !l.flush() {
		return
	}
	for _, j := range decided {
		if j.plan != nil {
			w.unsettled.Add(-1)
		}
		if j.next != nil {
			l.start(j.next)
		} else if l.last[j.key] == j {
			delete(l.last, j.key)
		}
		// Decided and published: only its offset is needed until the
		// watermark passes it.
		l.open--
		j.m.Value, j.m.Headers, j.m.Key = nil, nil, nil
		j.in, j.recs, j.plan, j.bad, j.end, j.next = intent.Intent{}, nil, nil, nil, nil, nil
	}
	l.full.Store(l.isFull())
}

// failed parks a job whose stage failed; admitted says it holds slots (it
// gives them back, and reports gone).
func (l *lane) failed(j *job, admitted bool) {
	j.tries++
	act, at := l.w.next(l.stopping, j.err, j.tries)
	if act == rebuildState {
		l.w.stateLost()
	}
	if act == waitLease {
		l.w.Log.Info("intent held by another worker; waiting", "intent_id", j.in.ID)
	} else if act == retryLater {
		l.w.Log.Warn("cannot decide intent; retrying", "partition", j.m.Partition, "offset", j.m.Offset, "err", j.err)
	}
	j.retryAt = at
	if j.retryAt.IsZero() {
		j.retryAt = l.w.Now()
	}
	if admitted {
		j.proceed <- false // reports gone, and is parked then
		return
	}
	l.parked = append(l.parked, j)
}

// wholeFailed holds the lane's Redis stages after a whole call failed.
func (l *lane) wholeFailed(err error) {
	l.tries++
	act, at := l.w.next(l.stopping, err, l.tries)
	switch act {
	case rebuildState:
		l.w.stateLost()
	case retryLater:
		l.w.Log.Warn("cannot reach Redis; retrying", "err", err)
	}
	l.hold = at
}

// flush publishes what was decided and commits the watermark. It returns
// false if publishing failed (shutdown): nothing more is committed, and the
// messages are redelivered and their records published again.
func (l *lane) flush() bool {
	if len(l.out) > 0 {
		if err := l.w.publish(l.work, l.out); err != nil {
			return false
		}
		l.out = l.out[:0]
	}
	n := 0
	for n < len(l.queue) && l.queue[n].done {
		n++
	}
	if n == 0 {
		return true
	}
	if err := l.w.Reader.CommitMessages(l.work, l.queue[n-1].m); err != nil {
		l.w.Log.Warn("commit failed; the messages will be redelivered", "partition", l.queue[0].m.Partition, "err", err)
	}
	l.w.Metrics.Committed.Add(float64(n))
	l.w.queued.Add(int64(-n))
	l.w.Metrics.Queued.Sub(float64(n))
	for _, j := range l.queue[:n] {
		if c := l.byChan[j.ch]; c != nil {
			c.Add(-1)
		}
	}
	clear(l.queue[:n])
	l.queue = append(l.queue[:0], l.queue[n:]...)
	l.full.Store(l.isFull())
	return true
}

// slots are what an admitted job holds for its provider call.
type slots struct {
	ch       intent.Channel // the channel whose slot it holds ("" none)
	reserved bool           // the provider's rate was reserved for ch
	flight   bool           // one of the worker's in-flight slots
}

// reserver is a provider with a shared rate that can be waited for apart
// from the call (ratelimit.Limited).
type reserver interface {
	Reserve(ctx context.Context) error
	SendReserved(ctx context.Context, m channel.Message) (channel.Receipt, error)
	Rate() (int, time.Duration)
}

// carry is a job's goroutine: admission, then (after the gate) the provider
// call.
func (w *Worker) carry(l *lane, j *job) {
	if !w.admit(l, j) {
		j.stage = stageGone
		l.reports <- j
		return
	}
	j.stage = stageAdmitted
	l.reports <- j
	if !<-j.proceed {
		w.release(j)
		j.stage = stageGone
		l.reports <- j
		return
	}
	if ch := j.plan.ch; ch != j.slots.ch {
		// The gate chose another channel (fallback): trade the slot.
		if !w.swap(l.work, j, ch) {
			w.release(j)
			j.plan = w.busyPlan(j, ch)
			j.stage = stageCalled
			l.reports <- j
			return
		}
	}
	w.sendJob(l.work, j, j.slots.reserved)
	w.release(j)
	j.stage = stageCalled
	l.reports <- j
}

// admit takes the slots of the job's first channel and an in-flight slot.
// It returns false only when shutdown came first.
func (w *Worker) admit(l *lane, j *job) bool {
	j.slots, j.busy, j.retryAt = slots{}, nil, time.Time{}
	ch := j.in.Channels[0]
	if !w.takeChannel(l.stopping, j, ch, l.heldUp) {
		if l.stopping.Err() != nil {
			return false
		}
		j.busy = &busyChannel{ch: ch, provider: providerName(w.Senders[ch]), until: w.Now().Add(w.cfg.AdmitWait)}
	}
	select {
	case w.flight <- struct{}{}:
		j.slots.flight = true
		w.Metrics.InFlight.Inc()
		if j.slots.ch != "" {
			w.calling(j.slots.ch).Add(1)
		}
		return true
	case <-l.stopping.Done():
		w.release(j)
		return false
	}
}

// takeChannel takes a slot of ch and reserves its rate. It waits as long as
// it must, unless heldUp(ch) says that waiting holds up other channels'
// intents (checked every AdmitWait): then it gives up, and the gate treats
// ch as busy. It returns false then, or at shutdown.
func (w *Worker) takeChannel(ctx context.Context, j *job, ch intent.Channel, heldUp func(intent.Channel) bool) bool {
	if sem := w.channelSlots[ch]; sem != nil {
		// Busy only if the channel's provider is what is full: slots held by
		// intents still waiting for an in-flight slot do not count.
		busy := func(ch intent.Channel) bool { return w.calling(ch).Load() >= int64(cap(sem)) && heldUp(ch) }
		if !w.acquire(ctx, sem, ch, busy) {
			return false
		}
	}
	j.slots.ch = ch
	r, ok := w.Senders[ch].(reserver)
	if !ok {
		return true
	}
	n, per := r.Rate()
	q := w.rateQueue[ch]
	waiting := w.rateWaiting(ch).Add(1)
	defer w.rateWaiting(ch).Add(-1)
	if ahead := time.Duration(waiting-1) * per / time.Duration(max(n, 1)); ahead > w.cfg.AdmitWait && heldUp(ch) {
		// The queue for the rate is longer than admission waits and
		// others wait behind it: do not join it.
		w.releaseChannel(j)
		return false
	}
	// One admission at a time waits for the rate (the others queue here,
	// without calling Redis).
	if q != nil && !w.acquire(ctx, q, ch, heldUp) {
		w.releaseChannel(j)
		return false
	}
	err := r.Reserve(ctx)
	if q != nil {
		<-q
	}
	if err != nil {
		w.releaseChannel(j)
		return false
	}
	j.slots.reserved = true
	return true
}

// acquire takes a slot of sem, waiting until ctx ends or — checked every
// AdmitWait — heldUp(ch).
func (w *Worker) acquire(ctx context.Context, sem chan struct{}, ch intent.Channel, heldUp func(intent.Channel) bool) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTicker(w.cfg.AdmitWait)
	defer t.Stop()
	for {
		select {
		case sem <- struct{}{}:
			return true
		case <-t.C:
			if heldUp(ch) {
				return false
			}
		case <-ctx.Done():
			return false
		}
	}
}

// swap trades the job's channel slot for one of ch (the gate chose ch).
func (w *Worker) swap(ctx context.Context, j *job, ch intent.Channel) bool {
	w.releaseChannel(j)
	ctx, cancel := context.WithTimeout(ctx, w.cfg.AdmitWait)
	defer cancel()
	if !w.takeChannel(ctx, j, ch, func(intent.Channel) bool { return false }) {
		return false
	}
	if j.slots.flight {
		w.calling(ch).Add(1)
	}
	return true
}

func (w *Worker) releaseChannel(j *job) {
	if j.slots.ch != "" && j.slots.flight {
		w.calling(j.slots.ch).Add(-1)
	}
	if sem := w.channelSlots[j.slots.ch]; sem != nil && j.slots.ch != "" {
		<-sem
	}
	j.slots.ch, j.slots.reserved = "", false
}

// release gives back every slot the job holds.
func (w *Worker) release(j *job) {
	w.releaseChannel(j)
	if j.slots.flight {
		<-w.flight
		w.Metrics.InFlight.Dec()
		j.slots.flight = false
	}
}
