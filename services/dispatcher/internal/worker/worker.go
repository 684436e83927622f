// Package worker is the consumer side of the dispatcher: it reads intents from
// reminders.intents in consumer group "dispatcher", takes each to a recorded
// decision (rejected to the DLQ, suppressed, sent, failed, ...), publishes the
// status events and only then commits the offset.
//
// Each partition has a lane (lane.go): a debtor's intents (one key, one
// partition) are decided in offset order, intents of different debtors
// concurrently, with up to MaxInFlight provider calls in flight per worker
// whatever the partition count.
package worker

import (
	"context"
	"errors"
	"fmt"
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
	MaxBatch    int           // intents through one gate or record pipeline; default 256
	MaxInFlight int           // provider calls in flight at once in this worker; default 1024
	// ChannelLimits caps one channel's calls in flight (its provider's
	// concurrency); a channel without one is held by MaxInFlight alone.
	ChannelLimits map[intent.Channel]int
	AdmitWait     time.Duration // longest wait for a channel's slot or rate before the gate defers or falls back; default 1s
	LaneQueue     int           // intents a partition holds uncommitted before its intake stops; default 4096
	LaneBuffer    int           // fetched messages waiting for their lane; default 256
	RetryBase     time.Duration // wait before the first retry of a failed send, doubled each time; default 30s
	RetryMax      time.Duration // longest wait between retries; default 30m
	RetryLimit    int           // retries before a send ends failed; default 8
	DrainTime     time.Duration // how long shutdown waits for in-flight work; default 15s
	StallAfter    time.Duration // fetching nothing this long while records wait: the reader is replaced; default 30s
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
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.AdmitWait == 0 {
		c.AdmitWait = time.Second
	}
	if c.LaneQueue == 0 {
		c.LaneQueue = 4096
	}
	if c.LaneBuffer == 0 {
		c.LaneBuffer = 256
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
	if c.SendTimeout < 0 || c.LeaseMargin < 0 || c.MaxBatch < 0 || c.RetryBase < 0 || c.RetryLimit < 0 ||
		c.MaxInFlight < 0 || c.AdmitWait < 0 || c.LaneQueue < 0 || c.LaneBuffer < 0 {
		return errors.New("worker: negative setting")
	}
	for ch, n := range c.ChannelLimits {
		if n < 0 {
			return fmt.Errorf("worker: negative concurrency for %s", ch)
		}
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
	cfg          Config
	attempts     atomic.Uint64
	reads        map[policy.Stream]bool // the streams the profile's rules count
	state        sync.RWMutex           // lanes call Redis under RLock; a rebuild holds Lock
	queued       atomic.Int64           // intents in lanes, not committed
	unsettled    atomic.Int64           // intents claimed whose outcome is not yet published
	flight       chan struct{}          // the worker's in-flight slots
	channelSlots map[intent.Channel]chan struct{}
	waiting      map[intent.Channel]*atomic.Int64 // admissions waiting for a channel's rate
	rateQueue    map[intent.Channel]chan struct{} // one admission at a time waits for a channel's rate
	callingN     map[intent.Channel]*atomic.Int64 // intents holding a channel's slot and an in-flight slot

	lost      atomic.Bool // Redis lost its state: nothing passes the gate until it is rebuilt
	rebuildMu sync.Mutex
	rebuiltCh chan struct{} // closed when the rebuild under way is done
	stopping  context.Context
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
	w := &Worker{cfg: cfg, Deps: d, reads: readsOf(d.Profile), flight: make(chan struct{}, cfg.MaxInFlight),
		channelSlots: map[intent.Channel]chan struct{}{}, waiting: map[intent.Channel]*atomic.Int64{},
		rateQueue: map[intent.Channel]chan struct{}{}, callingN: map[intent.Channel]*atomic.Int64{},
		stopping: context.Background()}
	for _, ch := range intent.Channels {
		if n := cfg.ChannelLimits[ch]; n > 0 {
			w.channelSlots[ch] = make(chan struct{}, n)
		}
		w.waiting[ch] = new(atomic.Int64)
		w.rateQueue[ch] = make(chan struct{}, 1)
		w.callingN[ch] = new(atomic.Int64)
	}
	return w, nil
}

func (w *Worker) calling(ch intent.Channel) *atomic.Int64 {
	if n := w.callingN[ch]; n != nil {
		return n
	}
	return new(atomic.Int64)
}

func (w *Worker) rateWaiting(ch intent.Channel) *atomic.Int64 {
	if n := w.waiting[ch]; n != nil {
		return n
	}
	return new(atomic.Int64)
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

	w.stopping = ctx
	var wg sync.WaitGroup
	lanes := map[int]chan kafka.Message{}
	defer func() {
		for _, l := range lanes {
			close(l)
		}
		wg.Wait()
	}()
	fetchFails := 0
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
				if w.queued.Load() == 0 && w.Stalled != nil && w.Stalled(ctx) {
					w.Log.Warn("the consumer fetched nothing while the group has records to read; replacing it")
					return ErrStalled
				}
				continue
			}
			// A fetch error is the broker's or the network's: keep going.
			w.Metrics.InfraErrors.Inc()
			w.Log.Warn("fetch failed; retrying", "err", err)
			fetchFails++
			t := time.NewTimer(retryDelay(fetchFails))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		fetchFails = 0
		l, ok := lanes[m.Partition]
		if !ok {
			l = make(chan kafka.Message, w.cfg.LaneBuffer)
			lanes[m.Partition] = l
			wg.Add(1)
			go func() {
				defer wg.Done()
				newLane(w, ctx, work, l).run()
			}()
		}
		select {
		case l <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// stateLost stops every lane from deciding until Redis's state is
// rebuilt from Kafka (once, however many lanes noticed).
func (w *Worker) stateLost() {
	w.rebuildMu.Lock()
	defer w.rebuildMu.Unlock()
	if w.lost.Load() {
		return
	}
	w.rebuiltCh = make(chan struct{})
	w.lost.Store(true)
	go w.recoverState(w.rebuiltCh)
}

// rebuilt is closed when the rebuild under way is done.
func (w *Worker) rebuilt() <-chan struct{} {
	w.rebuildMu.Lock()
	defer w.rebuildMu.Unlock()
	if w.rebuiltCh == nil {
		return nil
	}
	return w.rebuiltCh
}

// recoverState rebuilds Redis's state from Kafka after it was lost. No
// lane passes the gate meanwhile; the rebuild starts once every intent
// already claimed has its outcome recorded and published, so the replay
// sees everything this worker decided.
func (w *Worker) recoverState(done chan struct{}) {
	defer func() {
		w.lost.Store(false)
		close(done)
	}()
	for w.unsettled.Load() > 0 && w.stopping.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	w.state.Lock()
	defer w.state.Unlock()
	if w.Rebuild == nil {
		return
	}
	w.Log.Warn("Redis lost the dispatcher's state; rebuilding it from Kafka before deciding anything")
	if !w.retry(w.stopping, func() error { return w.Rebuild(w.stopping) }) {
		return
	}
	w.Metrics.Rebuilds.Inc()
}

// retry runs f until it succeeds, backing off, or until shutdown.
func (w *Worker) retry(stopping context.Context, f func() error) bool {
	for tries := 1; ; tries++ {
		err := f()
		if err == nil {
			return true
		}
		w.Metrics.InfraErrors.Inc()
		w.Log.Warn("cannot reach a dependency; retrying", "err", err)
		t := time.NewTimer(retryDelay(tries))
		select {
		case <-t.C:
		case <-stopping.Done():
			t.Stop()
			return false
		}
	}
}

func (w *Worker) publish(ctx context.Context, recs []kafka.Message) error {
	if len(recs) == 0 {
		return nil
	}
	for tries := 1; ; tries++ {
		err := w.Publisher.WriteMessages(ctx, recs...)
		if err == nil {
			return nil
		}
		w.Metrics.InfraErrors.Inc()
		w.Log.Warn("cannot publish status events; retrying", "records", len(recs), "err", err)
		t := time.NewTimer(retryDelay(tries))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
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
