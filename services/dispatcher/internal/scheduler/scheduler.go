// Package scheduler re-injects deferred intents when they are due. The
// durable copy of every deferral is on the compacted topic
// reminders.deferred (key = intent id); the scheduler holds them in memory,
// ordered by due time, and writes each due intent back to
// reminders.intents, where a worker decides it again. The worker's decision
// ends it (a tombstone) or defers it anew (a new value under the same key).
//
// One scheduler re-injects at a time: every worker process runs one, and a
// Redis lease elects the leader. A new leader reads the whole topic first,
// so restarting every process, or wiping Redis, loses no deferral.
package scheduler

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
)

// Lease elects the leader (the Redis store).
type Lease interface {
	HoldLease(ctx context.Context, name, owner string, d time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, owner string) error
}

// Publisher writes records to Kafka and returns once they are acked.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Replayer reads a topic to its end.
type Replayer interface {
	Replay(ctx context.Context, brokers []string, topic string, batch int, fn func([]kafka.Message) error) (int, map[int]int64, error)
}

// Config tunes the scheduler.
type Config struct {
	Owner     string
	Brokers   []string
	Topics    kafkaio.Topics
	LeaseTime time.Duration     // default 15s; renewed every third of it
	Tick      time.Duration     // how often due intents are looked for; default 250ms
	Batch     int               // intents re-injected per write; default 500
	Ops       *opsdata.Recorder // receives the backlog by due hour (nil: none)
}

// Scheduler re-injects due deferrals.
type Scheduler struct {
	cfg       Config
	lease     Lease
	pub       Publisher
	replay    Replayer
	log       *slog.Logger
	now       func() time.Time
	backlog   prometheus.Gauge
	reinject  prometheus.Counter
	leader    prometheus.Gauge
	mu        sync.Mutex
	items     map[string]*item
	queue     queue
	isLeading bool
}

// New returns a Scheduler. reg may be nil.
func New(cfg Config, lease Lease, pub Publisher, rp Replayer, log *slog.Logger, now func() time.Time, reg prometheus.Registerer) *Scheduler {
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = 15 * time.Second
	}
	if cfg.Tick == 0 {
		cfg.Tick = 250 * time.Millisecond
	}
	if cfg.Batch == 0 {
		cfg.Batch = 500
	}
	if cfg.Topics == (kafkaio.Topics{}) {
		cfg.Topics = kafkaio.DefaultTopics
	}
	if now == nil {
		now = time.Now
	}
	s := &Scheduler{
		cfg: cfg, lease: lease, pub: pub, replay: rp, log: log, now: now, items: map[string]*item{},
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_deferred_backlog", Help: "Deferred intents waiting to be re-injected (on the leading scheduler).",
		}),
		reinject: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_deferred_reinjected_total", Help: "Deferred intents written back to the intents topic when due.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_scheduler_leader", Help: "1 if this process is the leading scheduler.",
		}),
	}
	if reg != nil {
		reg.MustRegister(s.backlog, s.reinject, s.leader)
	}
	return s
}

// Pending returns the deferrals held, by due time (for the API and tests).
func (s *Scheduler) Pending() []status.Deferral {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]status.Deferral, 0, len(s.items))
	for _, it := range s.queue {
		out = append(out, it.d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Due.Before(out[j].Due) })
	return out
}

// Leading reports whether this scheduler leads.
func (s *Scheduler) Leading() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isLeading
}

// Run takes part in the election until ctx ends, leading whenever it holds
// the lease.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		ok, err := s.lease.HoldLease(ctx, "scheduler", s.cfg.Owner, s.cfg.LeaseTime)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler cannot reach Redis for its lease", "err", err)
		}
		if ok {
			s.lead(ctx)
		}
		t := time.NewTimer(s.cfg.LeaseTime / 3)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// lead re-injects while this scheduler holds the lease.
func (s *Scheduler) lead(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s.setLeading(true)
	s.log.Info("scheduler leads", "owner", s.cfg.Owner)
	defer func() {
		s.setLeading(false)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(parent), 2*time.Second)
		_ = s.lease.ReleaseLease(rctx, "scheduler", s.cfg.Owner)
		rcancel()
		s.log.Info("scheduler stepped down", "owner", s.cfg.Owner)
	}()
	go func() {
		t := time.NewTicker(s.cfg.LeaseTime / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ok, err := s.lease.HoldLease(ctx, "scheduler", s.cfg.Owner, s.cfg.LeaseTime)
				if !ok || err != nil {
					if ctx.Err() == nil {
						s.log.Warn("scheduler lost its lease", "err", err)
					}
					cancel()
					return
				}
			}
		}
	}()

	_, ends, err := s.replay.Replay(ctx, s.cfg.Brokers, s.cfg.Topics.Deferred, 1000, func(ms []kafka.Message) error {
		for _, m := range ms {
			s.apply(m)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("scheduler cannot read the deferrals", "err", err)
		}
		return
	}
	s.log.Info("deferrals loaded", "pending", s.count())

	msgs := make(chan kafka.Message, 1024)
	var wg sync.WaitGroup
	for p, end := range ends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.follow(ctx, p, end, msgs)
		}()
	}
	defer wg.Wait()

	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	// The backlog goes to the ops page about every 5 s: every so many
	// ticks, the first at once.
	every := max(1, int(5*time.Second/s.cfg.Tick))
	for ticks := 0; ; {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			s.apply(m)
		case <-tick.C:
			s.fire(ctx)
			if ticks%every == 0 {
				s.cfg.Ops.Backlog(s.byHour())
			}
			ticks++
		}
	}
}

// follow reads one partition of the deferred topic from offset on.
func (s *Scheduler) follow(ctx context.Context, part int, offset int64, out chan<- kafka.Message) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: s.cfg.Brokers, Topic: s.cfg.Topics.Deferred, Partition: part,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 500 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(offset); err != nil {
		s.log.Warn("scheduler cannot follow a partition", "partition", part, "err", err)
		return
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				s.log.Warn("scheduler read failed", "partition", part, "err", err)
			}
			return
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// apply folds one record of the deferred topic into the queue.
func (s *Scheduler) apply(m kafka.Message) {
	id := string(m.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() { s.backlog.Set(float64(len(s.items))) }()
	if m.Value == nil {
		if it, ok := s.items[id]; ok {
			heap.Remove(&s.queue, it.idx)
			delete(s.items, id)
		}
		return
	}
	var d status.Deferral
	if err := json.Unmarshal(m.Value, &d); err != nil || d.ID == "" {
		s.log.Warn("unreadable deferral skipped", "partition", m.Partition, "offset", m.Offset)
		return
	}
	if it, ok := s.items[id]; ok {
		it.d = d
		heap.Fix(&s.queue, it.idx)
		return
	}
	it := &item{d: d}
	s.items[id] = it
	heap.Push(&s.queue, it)
}

// fire re-injects what is due.
func (s *Scheduler) fire(ctx context.Context) {
	for {
		now := s.now()
		s.mu.Lock()
		var due []*item
		for len(s.queue) > 0 && len(due) < s.cfg.Batch && !s.queue[0].d.Due.After(now) {
			it := heap.Pop(&s.queue).(*item)
			delete(s.items, it.d.ID)
			due = append(due, it)
		}
		s.backlog.Set(float64(len(s.items)))
		s.mu.Unlock()
		if len(due) == 0 {
			return
		}
		msgs := make([]kafka.Message, 0, len(due))
		for _, it := range due {
			msgs = append(msgs, kafka.Message{
				Topic: s.cfg.Topics.Intents, Key: []byte(it.d.DebtorID), Value: it.d.Intent,
				Headers: []kafka.Header{
					{Key: kafkaio.HeaderReinjected, Value: []byte(strconv.FormatInt(it.d.Seq, 10))},
					{Key: kafkaio.HeaderDue, Value: []byte(it.d.Due.UTC().Format(time.RFC3339Nano))},
					{Key: kafkaio.HeaderRetries, Value: []byte(strconv.Itoa(it.d.Retries))},
				},
			})
		}
		if err := s.pub.WriteMessages(ctx, msgs...); err != nil {
			// Put them back; the next tick tries again.
			s.mu.Lock()
			for _, it := range due {
				if _, ok := s.items[it.d.ID]; !ok {
					s.items[it.d.ID] = it
					heap.Push(&s.queue, it)
				}
			}
			s.mu.Unlock()
			if ctx.Err() == nil {
				s.log.Warn("cannot re-inject due intents; retrying", "count", len(due), "err", err)
			}
			return
		}
		s.reinject.Add(float64(len(due)))
	}
}

func (s *Scheduler) setLeading(v bool) {
	s.mu.Lock()
	s.isLeading = v
	if !v {
		s.items = map[string]*item{}
		s.queue = nil
	}
	s.mu.Unlock()
	if v {
		s.leader.Set(1)
	} else {
		s.leader.Set(0)
		s.backlog.Set(0)
	}
}

// byHour counts the deferrals by the hour they are due.
func (s *Scheduler) byHour() map[int64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]int{}
	for _, it := range s.queue {
		out[it.d.Due.Unix()/3600]++
	}
	return out
}

func (s *Scheduler) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

type item struct {
	d   status.Deferral
	idx int
}

// queue is a min-heap of items by due time.
type queue []*item

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].d.Due.Before(q[j].d.Due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *queue) Push(x any) {
	it := x.(*item)
	it.idx = len(*q)
	*q = append(*q, it)
}
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}
