// Package worker is the consumer side of the dispatcher: it reads intents from
// reminders.intents in consumer group "dispatcher", takes each to a recorded
// decision (rejected to the DLQ, suppressed, sent, failed, ...), publishes the
// status events and only then commits the offset.
//
// Partitions are processed concurrently, each on its own lane, so one
// debtor's intents (one key, one partition) are handled in order.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/catalog"
	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
)

// Reader is the consumer-group reader (kafka-go's *kafka.Reader).
type Reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Publisher writes records to Kafka and returns once they are acked
// (kafka-go's *kafka.Writer).
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Store records decisions (the Redis store).
type Store interface {
	Gate(ctx context.Context, r store.GateRequest) (store.GateResult, error)
	GateBatch(ctx context.Context, rs []store.GateRequest) ([]store.GateResult, error)
	FinishBatch(ctx context.Context, rs []store.FinishRequest) ([]int64, error)
	Claim(ctx context.Context, r store.ClaimRequest) (store.ClaimResult, error)
	Finish(ctx context.Context, r store.FinishRequest) (int64, error)
	GetFor(ctx context.Context, debtorID, id string) (status.Record, error)
}

// Templates renders wording and tells what a template needs (the catalog).
type Templates interface {
	intent.Templates
	Render(name, locale string, ch intent.Channel, params map[string]string) (catalog.Message, error)
}

// Sender hands a message to one channel's provider.
type Sender interface {
	Send(ctx context.Context, m channel.Message) (channel.Receipt, error)
	// Idempotent reports whether the provider recognises a second send of
	// the same intent id, so a send whose outcome is unknown may be repeated.
	Idempotent() bool
}

// OptOuts records opt-outs.
type OptOuts interface {
	Record(ctx context.Context, o optout.OptOut) error
}

// Config tunes the worker.
type Config struct {
	Owner       string        // this worker's id, kept on the leases it takes
	SendTimeout time.Duration // deadline of one provider call; default 10s
	LeaseMargin time.Duration // a lease outlives every attempt's deadline by this; default 2s
	MaxBatch    int           // messages decided before one publish and commit; default 256
	GateWindow  time.Duration // intents pass the gate together only as many as are sent within this; default 250ms
	LaneBuffer  int           // messages queued per partition; default 512
	RetryBase   time.Duration // wait before the first retry of a failed send, doubled each time; default 30s
	RetryMax    time.Duration // longest wait between retries; default 30m
	RetryLimit  int           // retries before a send ends failed; default 8
	DrainTime   time.Duration // how long shutdown waits for in-flight work; default 15s
	StallAfter  time.Duration // fetching nothing this long while records wait: the reader is replaced; default 30s
}

func (c *Config) defaults() {
	if c.SendTimeout == 0 {
		c.SendTimeout = 10 * time.Second
	}
	if c.LeaseMargin == 0 {
		c.LeaseMargin = 2 * time.Second
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.GateWindow == 0 {
		c.GateWindow = 250 * time.Millisecond
	}
	if c.LaneBuffer == 0 {
		c.LaneBuffer = 512
	}
	if c.RetryBase == 0 {
		c.RetryBase = 30 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Minute
	}
	if c.RetryLimit == 0 {
		c.RetryLimit = 8
	}
	if c.DrainTime == 0 {
		c.DrainTime = 15 * time.Second
	}
	if c.StallAfter == 0 {
		c.StallAfter = 30 * time.Second
	}
}

// Validate reports a config that cannot work.
func (c Config) Validate() error {
	if c.Owner == "" {
		return errors.New("worker: owner id is required")
	}
	if c.SendTimeout < 0 || c.LeaseMargin < 0 || c.MaxBatch < 0 || c.RetryBase < 0 || c.RetryLimit < 0 {
		return errors.New("worker: negative setting")
	}
	return nil
}

// Deps are what the worker works with.
type Deps struct {
	Reader    Reader
	Publisher Publisher
	Store     Store
	Templates Templates
	Profile   *policy.Profile // the compliance policy every contact passes
	Senders   map[intent.Channel]Sender
	OptOuts   OptOuts // records opt-outs a provider reports
	// Rebuild restores Redis's state from Kafka (opt-outs, records) when it
	// is lost; it does nothing if the state is there.
	Rebuild func(ctx context.Context) error
	// Stalled reports whether the consumer group has records no one reads
	// (asked when this worker fetched nothing for StallAfter).
	Stalled func(ctx context.Context) bool
	Ops     *opsdata.Recorder // counts for the ops page (nil: none)
	// OptOutLinks makes a debtor's signed opt-out link for a channel, put
	// in messages whose template carries one. Nil: no links.
	OptOutLinks func(debtorID string, ch intent.Channel) (string, error)
	Topics      kafkaio.Topics
	Metrics     *Metrics
	Log         *slog.Logger
	Now         func() time.Time
}

// Worker consumes intents. Run it once.
type Worker struct {
	cfg       Config
	attempts  atomic.Uint64
	sendNanos atomic.Int64           // running average of provider call durations
	reads     map[policy.Stream]bool // the streams the profile's rules count
	state     sync.RWMutex           // lanes decide under RLock; a rebuild holds Lock
	busy      atomic.Int64           // lanes in the middle of a batch
	Deps
}

// New returns a Worker.
func New(cfg Config, d Deps) (*Worker, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Reader == nil || d.Publisher == nil || d.Store == nil || d.Templates == nil || d.Profile == nil {
		return nil, errors.New("worker: reader, publisher, store, templates and profile are required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(nil)
	}
	if d.Topics == (kafkaio.Topics{}) {
		d.Topics = kafkaio.DefaultTopics
	}
	return &Worker{cfg: cfg, Deps: d, reads: readsOf(d.Profile)}, nil
}

// Run consumes until ctx ends, then drains: each lane finishes the intent in
// hand, publishes and commits what it decided, and stops. Messages fetched
// but not started are left for the next owner of the partition.
func (w *Worker) Run(ctx context.Context) error {
	// work outlives ctx by the drain time, so a send in flight is not cut off.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(w.cfg.DrainTime, cancelWork)
		_ = t
	})
	defer stop()

	var wg sync.WaitGroup
	lanes := map[int]chan kafka.Message{}
	defer func() {
		for _, l := range lanes {
			close(l)
		}
		wg.Wait()
	}()
	delay := 100 * time.Millisecond
	for {
		fctx, cancel := context.WithTimeout(ctx, w.cfg.StallAfter)
		m, err := w.Reader.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// Nothing fetched for a while. If every lane is idle while
				// the group still has records to read, this reader stalled
				// (it happens to kafka-go after some rebalances): hand it back
				// to be replaced.
				if w.busy.Load() == 0 && w.Stalled != nil && w.Stalled(ctx) {
					w.Log.Warn("the consumer fetched nothing while the group has records to read; replacing it")
					return ErrStalled
				}
				continue
			}
			// A fetch error is the broker's or the network's: keep going.
			w.Metrics.InfraErrors.Inc()
			w.Log.Warn("fetch failed; retrying", "err", err)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			delay = min(delay*2, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		l, ok := lanes[m.Partition]
		if !ok {
			l = make(chan kafka.Message, w.cfg.LaneBuffer)
			lanes[m.Partition] = l
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.lane(ctx, work, l)
			}()
		}
		select {
		case l <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// lane decides one partition's messages in order. stopping ends intake;
// work ends in-flight work.
func (w *Worker) lane(stopping, work context.Context, in <-chan kafka.Message) {
	batch := make([]kafka.Message, 0, w.cfg.MaxBatch)
	for {
		select {
		case <-stopping.Done():
			return
		default:
		}
		if len(batch) == 0 {
			select {
			case m, ok := <-in:
				if !ok {
					return
				}
				batch = append(batch, m)
			case <-stopping.Done():
				return
			}
		}
	fill:
		for len(batch) < w.cfg.MaxBatch {
			select {
			case m, ok := <-in:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		w.busy.Add(1)
		w.state.RLock()
		out, done, lost := w.decideBatch(stopping, work, batch)
		if len(out) > 0 {
			if err := w.publish(work, out); err != nil {
				w.state.RUnlock()
				w.busy.Add(-1)
				return // not committed: redelivered and re-published (ids make it safe)
			}
		}
		if done > 0 {
			if err := w.Reader.CommitMessages(work, batch[done-1]); err != nil {
				w.Log.Warn("commit failed; the batch will be redelivered", "partition", batch[0].Partition, "err", err)
			}
			w.Metrics.Committed.Add(float64(done))
		}
		w.state.RUnlock()
		w.busy.Add(-1)
		switch {
		case lost:
			w.recoverState(stopping)
		case done == 0 && stopping.Err() != nil:
			return // shutting down
		case done == 0:
			// Nothing could be decided this time (a dependency failing in a
			// way the retries gave up on): try again shortly, never drop the
			// partition's lane.
			w.Log.Warn("lane decided nothing; trying again", "partition", batch[0].Partition, "messages", len(batch))
			time.Sleep(200 * time.Millisecond)
		}
		// What was not decided (shutdown, or a lost state) goes first next time.
		batch = append(batch[:0], batch[done:]...)
		if stopping.Err() != nil {
			return
		}
	}
}

// recoverState rebuilds Redis's state from Kafka after it was lost, with
// every lane of this worker stopped between batches (their decisions so far
// published), so the replay sees everything this worker recorded.
func (w *Worker) recoverState(stopping context.Context) {
	w.state.Lock()
	defer w.state.Unlock()
	if w.Rebuild == nil {
		return
	}
	w.Log.Warn("Redis lost the dispatcher's state; rebuilding it from Kafka before deciding anything")
	if !w.retry(stopping, func() error { return w.Rebuild(stopping) }) {
		return
	}
	w.Metrics.Rebuilds.Inc()
}

// decideRetrying decides m, retrying infrastructure failures (Redis down,
// another worker holding the intent) until it succeeds or shutdown.
func (w *Worker) decideRetrying(stopping, work context.Context, m kafka.Message, counted bool) ([]kafka.Message, error) {
	if !counted {
		w.Metrics.Consumed.Inc()
	}
	delay := 100 * time.Millisecond
	for {
		recs, err := w.decide(work, m)
		if err == nil {
			return recs, nil
		}
		if errors.Is(err, store.ErrStateLost) {
			return nil, err // the lane rebuilds the state before it goes on
		}
		var busy *busyError
		wait := delay
		if errors.As(err, &busy) {
			wait = min(max(time.Until(busy.until), 50*time.Millisecond), 5*time.Second)
			w.Log.Info("intent held by another worker; waiting", "intent_id", busy.id, "owner", busy.owner)
		} else {
			w.Metrics.InfraErrors.Inc()
			w.Log.Warn("cannot decide intent; retrying", "partition", m.Partition, "offset", m.Offset, "err", err)
			delay = min(delay*2, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-stopping.Done():
			t.Stop()
			return nil, stopping.Err()
		}
	}
}

func (w *Worker) publish(ctx context.Context, recs []kafka.Message) error {
	if len(recs) == 0 {
		return nil
	}
	delay := 100 * time.Millisecond
	for {
		err := w.Publisher.WriteMessages(ctx, recs...)
		if err == nil {
			return nil
		}
		w.Metrics.InfraErrors.Inc()
		w.Log.Warn("cannot publish status events; retrying", "records", len(recs), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// lease is how long a claim on an intent lasts: the provider call's
// deadline and a margin for clock skew between hosts. A worker that has not
// finished by then is taken for dead.
func (c Config) lease() time.Duration {
	return c.SendTimeout + c.LeaseMargin
}

// ErrStalled: Run returned because its reader stopped delivering records
// the group still has; the caller replaces the reader and runs again.
var ErrStalled = errors.New("worker: consumer stalled")

type busyError struct {
	id, owner string
	until     time.Time
}

func (e *busyError) Error() string { return "intent " + e.id + " is held by " + e.owner }
