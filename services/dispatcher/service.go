package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/configs"
	"github.com/contactd/dispatcher/pkg/catalog"
	"github.com/contactd/dispatcher/pkg/channel/breaker"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/control"
	"github.com/contactd/dispatcher/services/dispatcher/internal/httpapi"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
	"github.com/contactd/dispatcher/services/dispatcher/internal/scheduler"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

// Roles a process plays.
type Roles struct {
	Worker bool
	API    bool
	Dev    bool // sandbox routes on the API

	// For measuring (dispatcher bench): a hook on the Redis client, and a
	// wrapper around each channel's sender.
	RedisHook  redis.Hook
	WrapSender func(intent.Channel, worker.Sender) worker.Sender
}

// Service is the wired dispatcher: worker and/or API over Kafka and Redis.
// dev, worker and api run it; the tests run it too.
type Service struct {
	cfg       Config
	roles     Roles
	log       *slog.Logger
	rdb       redis.UniversalClient
	store     *store.Store
	writer    *kafka.Writer
	reader    *kafka.Reader
	ctlReader *kafka.Reader // reminders.control, its own group
	control   *control.Consumer
	kc        *kafkaio.Client
	worker    *worker.Worker
	api       *httpapi.Server
	http      *http.Server
	ln        net.Listener
	sched     *scheduler.Scheduler
	breakers  []*breaker.Breaker
	adapters  []io.Closer // provider adapters holding connections
	readerCfg kafka.ReaderConfig
	ops       *opsdata.Recorder
	Sandbox   *sandbox.Sandbox
	Profile   *policy.Profile

	metricsOnce     sync.Once
	decisionMetrics *worker.Metrics
	Reg             *prometheus.Registry
	Owner           string
}

// NewService wires a service. It checks that the topics exist and Redis
// answers, so a misconfigured process fails at start with a clear message.
func NewService(ctx context.Context, cfg Config, roles Roles, log *slog.Logger) (*Service, error) {
	s := &Service{cfg: cfg, roles: roles, log: log, Reg: prometheus.NewRegistry(), Owner: ownerID()}
	s.Reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	cat, err := loadCatalog(cfg.ConfigDir)
	if err != nil {
		return nil, err
	}
	if s.Profile, err = policy.Load(configFS(cfg.ConfigDir), cfg.Profile); err != nil {
		return nil, fmt.Errorf("policy profile %s: %w", cfg.Profile, err)
	}
	optoutKeys, err := optout.ParseKeys(cfg.OptOutKeys)
	if err != nil {
		return nil, fmt.Errorf("DISPATCHER_OPTOUT_KEYS: %w", err)
	}
	apiKeys, err := httpapi.ParseAPIKeys(cfg.APIKeys)
	if err != nil {
		return nil, fmt.Errorf("DISPATCHER_API_KEYS: %w", err)
	}
	rdb, err := redisClient(cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	s.rdb = rdb
	if roles.RedisHook != nil {
		rdb.AddHook(roles.RedisHook)
	}
	if s.store, err = store.New(rdb, store.Config{Prefix: cfg.RedisPrefix, RecordTTL: cfg.StatusTTL, AddressKey: cfg.addressKey()}); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.store.Ping(pctx); err != nil {
		return nil, fmt.Errorf("redis at %s does not answer: %w", redactURL(cfg.RedisURL), err)
	}
	// Decisions name the profile version; readers find its texts here.
	if err := s.store.PutProfile(pctx, s.Profile.Version, store.ProfileText{Name: s.Profile.Name, Sources: s.Profile.Sources()}); err != nil {
		return nil, err
	}
	topics := kafkaio.DefaultTopics
	s.kc = kafkaio.NewClient(cfg.Brokers)
	missing, err := s.kc.Missing(pctx, topics.All())
	if err != nil {
		return nil, fmt.Errorf("kafka at %s: %w", strings.Join(cfg.Brokers, ","), err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("kafka topics missing: %s (create them as docs/operations.md says)", strings.Join(missing, ", "))
	}
	s.writer = kafkaio.NewWriter(cfg.Brokers)
	if err := s.rebuild(ctx); err != nil {
		return nil, err
	}

	if s.Sandbox, err = sandbox.New(sandbox.Config{Idempotent: !cfg.SandboxForgetful, Journal: cfg.SandboxJournal, Latency: cfg.SandboxLatency}); err != nil {
		return nil, err
	}
	senders, breakers, closers, err := providers(cfg, roles.Dev, s.Sandbox, rdb, s.Reg, log)
	if err != nil {
		return nil, err
	}
	s.breakers, s.adapters = breakers, closers
	if roles.WrapSender != nil {
		for ch, snd := range senders {
			senders[ch] = roles.WrapSender(ch, snd)
		}
	}

	recorder := &optout.Recorder{Topic: topics.OptOuts, Pub: s.writer, Hot: s.store}
	s.ops = opsdata.NewRecorder()
	if roles.Worker {
		rc := kafkaio.ReaderConfig(cfg.Brokers, cfg.Group, topics.Intents)
		rc.SessionTimeout = cfg.SessionTimeout
		rc.RebalanceTimeout = cfg.SessionTimeout
		rc.HeartbeatInterval = max(cfg.SessionTimeout/10, 100*time.Millisecond)
		rc.ErrorLogger = kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka consumer: " + fmt.Sprintf(msg, args...))
		})
		s.readerCfg = rc
		s.reader = kafka.NewReader(rc)
		s.worker, err = worker.New(worker.Config{
			Owner: s.Owner, SendTimeout: cfg.SendTimeout,
			RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, RetryLimit: cfg.RetryLimit,
			MaxInFlight: cfg.MaxInFlight, ChannelLimits: channelLimits(cfg), AdmitWait: cfg.AdmitWait, LaneQueue: cfg.LaneQueue,
		}, worker.Deps{
			Reader: s.reader, Publisher: s.writer, Store: s.store, Templates: cat, Profile: s.Profile,
			Senders: senders, Topics: topics, Metrics: s.metrics(), Log: log,
			OptOuts:     recorder,
			Ops:         s.ops,
			OptOutLinks: optoutLinks(optoutKeys, cfg.PublicBaseURL),
			Rebuild:     s.rebuildAfterLoss,
			Stalled:     s.stalled,
		})
		if err != nil {
			return nil, err
		}
		// Commands of reminders.control, in the group <group>-control.
		cc := kafkaio.ReaderConfig(cfg.Brokers, cfg.Group+"-control", topics.Control)
		cc.SessionTimeout, cc.RebalanceTimeout, cc.HeartbeatInterval = rc.SessionTimeout, rc.RebalanceTimeout, rc.HeartbeatInterval
		cc.CommitInterval = 0 // each command's offset committed synchronously, after its effect
		cc.ErrorLogger = rc.ErrorLogger
		s.ctlReader = kafka.NewReader(cc)
		s.control = &control.Consumer{
			Reader: s.ctlReader, Publisher: s.writer, Markers: s.store, Topics: topics, Log: log, Now: time.Now,
			Metrics:      control.NewMetrics(s.Reg),
			InFlightWait: 2*cfg.SendTimeout + 10*time.Second,
			Applier: &control.Applier{Records: s.store, Canceler: s.store, Holds: s.store, OptOuts: recorder, Topics: topics,
				Now: time.Now, Canceled: s.countCanceled},
		}
		s.sched = scheduler.New(scheduler.Config{Owner: s.Owner, Brokers: cfg.Brokers, Topics: topics, Ops: s.ops},
			s.store, s.writer, s.kc, log, nil, s.Reg)
	}
	// Every process serves HTTP: the API role the whole API, a worker only
	// /healthz, /readyz and /metrics.
	d := httpapi.Deps{
		Publisher: s.writer, Store: s.store, Templates: cat, Topics: topics, Gatherer: s.Reg, Log: log,
		Profile: s.Profile, Contacts: s.store, Ops: s.store, Resolver: s.store,
		Previewer: worker.NewPreviewer(s.store, cat, s.Profile), Canceler: s.store, Holds: s.store,
		Canceled: func(reason string) { s.metrics().Decisions.WithLabelValues(string(status.Canceled), reason).Inc() },
		OptOuts:  recorder, OptOutReader: s.store, OptOutKeys: optoutKeys, Webhooks: s.store,
		PublicBaseURL: cfg.PublicBaseURL, TwilioAuthToken: cfg.Twilio.AuthToken, AllowUnsigned: roles.Dev,
		APIKeys: apiKeys, TrustedProxies: cfg.TrustedProxies, PublicConnsPerIP: cfg.PublicConnsPerIP,
		OpsRec: s.ops, Sessions: s.store, OpsData: opsView{rdb: rdb, prefix: cfg.RedisPrefix},
		Ready: []httpapi.Check{{Name: "redis", Ping: s.store.Ping}, {Name: "kafka", Ping: s.kc.Ping},
			{Name: "state", Ping: s.stateReady}},
		OpsOnly: !roles.API,
	}
	if roles.Dev {
		d.Sandbox = s.Sandbox
	}
	if s.api, err = httpapi.New(d); err != nil {
		return nil, err
	}
	if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	s.http = s.api.HTTPServer(httpapi.HTTPConfig{
		ReadTimeout: cfg.HTTPReadTimeout, WriteTimeout: cfg.HTTPWriteTimeout, IdleTimeout: cfg.HTTPIdleTimeout,
	})
	ok = true
	return s, nil
}

// Addr is where the API listens.
func (s *Service) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Store returns the Redis store.
func (s *Service) Store() *store.Store { return s.store }

// Run serves until ctx ends, then shuts down in order: stop taking intents,
// drain the worker (in-flight intents are decided, published and committed),
// stop the API, then close Kafka and Redis clients.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if s.http != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.ops.Run(wctx, s.rdb, s.cfg.RedisPrefix, 2*time.Second, time.Now)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watchCalendar(wctx, time.Now, 24*time.Hour)
	}()
	if s.worker != nil {
		wg.Add(3)
		go func() {
			defer wg.Done()
			publishProviders(wctx, s.store, s.Owner, s.breakers, 5*time.Second, s.log)
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchLag(wctx, 15*time.Second)
		}()
		go func() {
			defer wg.Done()
			for {
				err := s.worker.Run(wctx)
				if !errors.Is(err, worker.ErrStalled) {
					if err != nil {
						errc <- err
					}
					return
				}
				// A stalled reader is replaced: leaving the group and
				// joining again hands its partitions out afresh.
				_ = s.reader.Close()
				s.reader = kafka.NewReader(s.readerCfg)
				s.worker.Reader = s.reader
			}
		}()
		go func() {
			defer wg.Done()
			_ = s.sched.Run(wctx)
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.control.Run(wctx); err != nil {
				errc <- err
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		cancel()
	}
	if s.http != nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = s.http.Shutdown(sctx)
		scancel()
	}
	wg.Wait()
	// What the drained work counted.
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	_ = s.ops.Flush(fctx, s.rdb, s.cfg.RedisPrefix, time.Now())
	fcancel()
	return err
}

// Close releases the clients. Call it after Run returned.
func (s *Service) Close() {
	if s.reader != nil {
		_ = s.reader.Close() // commits what the worker marked done
	}
	if s.ctlReader != nil {
		_ = s.ctlReader.Close()
	}
	if s.writer != nil {
		_ = s.writer.Close()
	}
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.Sandbox != nil {
		_ = s.Sandbox.Close()
	}
	for _, a := range s.adapters {
		_ = a.Close()
	}
}

// rebuild restores the hot state from Kafka when Redis does not have it (a
// new or wiped Redis, or dev mode's in-process one): opt-outs first (they
// must hold before anything is decided), then intent records, so that an
// id decided before is still recognised.
func (s *Service) rebuild(ctx context.Context) error { return s.rebuildWith(ctx, false) }

// rebuildAfterLoss is rebuild when a running worker's gate found the state
// gone: other workers were (or this one was) sending a moment ago, so it
// always waits for the sends in flight to be published (see rebuildWith).
func (s *Service) rebuildAfterLoss(ctx context.Context) error { return s.rebuildWith(ctx, true) }

// rebuildWith rebuilds; inFlight says sends may have been in progress when
// the state was lost.
func (s *Service) rebuildWith(ctx context.Context, inFlight bool) error {
	need, err := s.store.NeedsRebuild(ctx)
	if err != nil || !need {
		return err
	}
	start := time.Now()
	optouts, _, err := s.kc.Replay(ctx, s.cfg.Brokers, kafkaio.DefaultTopics.OptOuts, 1000, func(ms []kafka.Message) error {
		for _, m := range ms {
			// A debtor's record or a number's (an SMS keyword reply);
			// a tombstone or an unreadable record is skipped.
			var o optout.OptOut
			if m.Value == nil || json.Unmarshal(m.Value, &o) != nil || o.Check() != nil {
				continue
			}
			if err := optout.Apply(ctx, s.store, o, m.Value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuilding opt-outs from %s: %w", kafkaio.DefaultTopics.OptOuts, err)
	}
	applied, contacts, unnumbered := 0, 0, 0
	var newest time.Time
	apply := func(ms []kafka.Message) error {
		evs := make([]status.Event, 0, len(ms))
		for _, m := range ms {
			if m.Time.After(newest) {
				newest = m.Time
			}
			var ev status.Event
			if err := json.Unmarshal(m.Value, &ev); err != nil {
				s.log.Warn("unreadable status event skipped in rebuild", "partition", m.Partition, "offset", m.Offset)
				continue
			}
			evs = append(evs, ev)
		}
		k, err := s.store.ApplyEvents(ctx, evs, time.Now())
		applied += k
		if err != nil {
			return err
		}
		c, noNumber, err := s.recount(ctx, evs)
		contacts += c
		unnumbered += noNumber
		return err
	}
	n, ends, err := s.kc.Replay(ctx, s.cfg.Brokers, kafkaio.DefaultTopics.Status, 1000, apply)
	if err != nil {
		return fmt.Errorf("rebuilding intent records from %s: %w", kafkaio.DefaultTopics.Status, err)
	}
	// Workers that were sending when the state was lost publish their
	// claims with the outcome, after the send: within a send timeout. When
	// sends may have been in flight (a running gate found the state gone,
	// or the topic was busy just now), wait that long and fold in what came
	// since, before anything is decided: an intent claimed a moment before
	// the loss, and redelivered to another worker, is then a duplicate, and
	// its debtor's contact counts when their next intent is decided.
	if settle := s.cfg.SendTimeout + 2*time.Second; inFlight || newest.After(start.Add(-settle)) {
		s.log.Info("waiting for the sends in flight at the loss to be published", "for", time.Until(start.Add(settle)).Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(settle))):
		}
		k, more, err := s.kc.ReplayFrom(ctx, s.cfg.Brokers, kafkaio.DefaultTopics.Status, ends, 1000, apply)
		if err != nil {
			return fmt.Errorf("rebuilding intent records from %s: %w", kafkaio.DefaultTopics.Status, err)
		}
		n, ends = n+k, more
	}
	s.log.Info("state rebuilt from Kafka", "optout_records", optouts, "status_events", n, "entries_applied", applied,
		"contacts_recounted", contacts, "took", time.Since(start).Round(time.Millisecond))
	// The contact streams are rebuilt from the claims: a claim whose send
	// then failed before any provider took it counts again although the
	// live gate had uncounted it. The caps may hold back a little more
	// than needed until those contacts leave their windows; never less.
	s.log.Info("contact streams rebuilt conservatively: every claim within the longest rule window counts as an attempt, including sends that failed before a provider took them",
		"lookback", s.Profile.MaxLookback().String())
	if unnumbered > 0 {
		s.log.Warn("claims without a number digest (published by an older version): their per-number counts are not rebuilt", "claims", unnumbered)
	}
	// Other workers may still publish decisions they made around the loss:
	// follow the topic a while longer and fold those in too.
	go s.followStatus(context.WithoutCancel(ctx), ends, 2*s.cfg.SendTimeout+30*time.Second)
	return s.store.MarkRebuilt(ctx, time.Now())
}

// recount puts the contacts that status events record back into the
// gate's streams and the number index (see worker.RecountOf).
func (s *Service) recount(ctx context.Context, evs []status.Event) (contacts, noNumber int, err error) {
	rc := worker.RecountOf(s.Profile, evs)
	if contacts, err = s.store.ApplyContacts(ctx, rc.Contacts, time.Now(), s.Profile.MaxLookback()); err != nil {
		return 0, 0, err
	}
	if err := s.store.ApplyNumbers(ctx, rc.Numbers); err != nil {
		return 0, 0, err
	}
	return contacts, rc.NoNumber, nil
}

// followStatus applies status events published after a rebuild's replay,
// for a while: what other processes decided while the state was being lost
// reaches Redis as well.
func (s *Service) followStatus(ctx context.Context, from map[int]int64, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for part, off := range from {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.cfg.Brokers, Topic: kafkaio.DefaultTopics.Status, Partition: part, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 500 * time.Millisecond})
			defer r.Close()
			if err := r.SetOffset(off); err != nil {
				return
			}
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					return
				}
				var ev status.Event
				if json.Unmarshal(m.Value, &ev) == nil {
					_, _ = s.store.ApplyEvents(ctx, []status.Event{ev}, time.Now())
					_, _, _ = s.recount(ctx, []status.Event{ev})
				}
			}
		}()
	}
	wg.Wait()
}

// countCanceled counts an intent a control command canceled, as the API
// counts its own: the ops page and dispatcher_decisions_total.
func (s *Service) countCanceled(reason string) {
	s.ops.Decision(string(status.Canceled), reason, "")
	s.metrics().Decisions.WithLabelValues(string(status.Canceled), reason).Inc()
}

// metrics are the decision series, registered once whichever roles the
// process has (the API records cancellations in them).
func (s *Service) metrics() *worker.Metrics {
	s.metricsOnce.Do(func() { s.decisionMetrics = worker.NewMetrics(s.Reg) })
	return s.decisionMetrics
}

// watchCalendar keeps dispatcher_calendar_covered_until (unix seconds) at
// the end of the profile's holiday calendars and, from
// policy.CalendarWarnAhead before it, logs a warning at start and every day:
// on a day no calendar covers, holiday rules forbid contact (fail safe), so
// a calendar running out shows long before it stops calls.
func (s *Service) watchCalendar(ctx context.Context, now func() time.Time, every time.Duration) {
	if _, ok := s.Profile.CoveredUntil(now()); !ok {
		return // no holiday rule, or uncovered years are ordinary by choice
	}
	covered := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dispatcher_calendar_covered_until",
		Help: "When the holiday calendars of the policy profile stop covering (unix seconds): the start of the first year none covers.",
	})
	if err := s.Reg.Register(covered); err != nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		at := now()
		until, _ := s.Profile.CoveredUntil(at)
		covered.Set(float64(until.Unix()))
		if w := s.Profile.CalendarWarning(at, policy.CalendarWarnAhead); w != "" {
			s.log.Warn(w, "profile", s.Profile.Name, "covered_until", until.Format(time.DateOnly), "calendars", strings.Join(s.Profile.Calendars(), ","))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchLag keeps dispatcher_consumer_lag{partition} current: records of
// reminders.intents the group has not committed.
func (s *Service) watchLag(ctx context.Context, every time.Duration) {
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dispatcher_consumer_lag", Help: "Intent records not yet committed by the consumer group, per partition.",
	}, []string{"partition"})
	if err := s.Reg.Register(lag); err != nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		byPart, err := s.kc.Lag(lctx, s.cfg.Group, kafkaio.DefaultTopics.Intents)
		cancel()
		if err == nil {
			for p, n := range byPart {
				lag.WithLabelValues(strconv.Itoa(p)).Set(float64(n))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stalled reports whether the group has records nobody committed.
func (s *Service) stalled(ctx context.Context) bool {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lag, err := s.kc.Lag(lctx, s.cfg.Group, kafkaio.DefaultTopics.Intents)
	if err != nil {
		return false
	}
	for _, n := range lag {
		if n > 0 {
			return true
		}
	}
	return false
}

// stateReady fails while Redis lacks the dispatcher's state (lost and not
// yet rebuilt).
func (s *Service) stateReady(ctx context.Context) error {
	need, err := s.store.NeedsRebuild(ctx)
	if err != nil {
		return err
	}
	if need {
		return errors.New("redis lost the state; rebuilding from Kafka")
	}
	return nil
}

// opsView reads the ops page's data from Redis.
type opsView struct {
	rdb    redis.UniversalClient
	prefix string
}

func (v opsView) View(ctx context.Context, now time.Time) (opsdata.View, error) {
	return opsdata.Read(ctx, v.rdb, v.prefix, now)
}

// optoutLinks makes the debtor's signed opt-out link for a channel.
func optoutLinks(keys *optout.Keys, base string) func(debtorID string, ch intent.Channel) (string, error) {
	base = strings.TrimRight(base, "/")
	return func(debtorID string, ch intent.Channel) (string, error) {
		tok, err := keys.Sign(optout.Claims{DebtorID: debtorID, Channel: string(ch), Expires: time.Now().Add(optout.DefaultTokenTTL)})
		if err != nil {
			return "", err
		}
		return base + "/u/" + tok, nil
	}
}

// configFS is the configs built into the binary, with the directory dir
// (DISPATCHER_CONFIG_DIR) laid over them: a profile or holiday calendar file
// there adds to or replaces the built-in one of the same name (a bank drops
// in next year's holidays/cn-<year>.yaml without a rebuild), and a
// templates/ folder there replaces the built-in templates whole (a bank that
// writes its own wording owns all of it).
func configFS(dir string) fs.FS {
	if dir != "" {
		return overlayFS{upper: os.DirFS(dir), lower: configs.FS}
	}
	return configs.FS
}

// overlayFS reads upper, then lower: see configFS.
type overlayFS struct{ upper, lower fs.FS }

// whole lists the folders that upper replaces whole when it has them.
var wholeDirs = []string{"templates"}

func (o overlayFS) onlyUpper(name string) bool {
	for _, d := range wholeDirs {
		if name == d || strings.HasPrefix(name, d+"/") {
			fi, err := fs.Stat(o.upper, d)
			return err == nil && fi.IsDir()
		}
	}
	return false
}

func (o overlayFS) Open(name string) (fs.File, error) {
	f, err := o.upper.Open(name)
	if err == nil || !errors.Is(err, fs.ErrNotExist) || o.onlyUpper(name) {
		return f, err
	}
	return o.lower.Open(name)
}

// ReadDir merges both listings, upper's entry winning a name both have, so
// fs.Glob sees every file Open can open.
func (o overlayFS) ReadDir(name string) ([]fs.DirEntry, error) {
	up, uerr := fs.ReadDir(o.upper, name)
	if uerr != nil && !errors.Is(uerr, fs.ErrNotExist) {
		return nil, uerr
	}
	if o.onlyUpper(name) {
		return up, uerr
	}
	low, lerr := fs.ReadDir(o.lower, name)
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		return nil, lerr
	}
	if uerr != nil && lerr != nil {
		return nil, uerr
	}
	seen := map[string]bool{}
	out := append([]fs.DirEntry(nil), up...)
	for _, e := range up {
		seen[e.Name()] = true
	}
	for _, e := range low {
		if !seen[e.Name()] {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func loadCatalog(dir string) (*catalog.Catalog, error) {
	c, err := catalog.Load(configFS(dir))
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return c, nil
}

// redisClient connects to one Redis (redis:// URL) or a cluster (several
// comma-separated addresses or URLs).
func redisClient(raw string) (redis.UniversalClient, error) {
	parts := strings.Split(raw, ",")
	if len(parts) == 1 {
		if !strings.Contains(raw, "://") {
			raw = "redis://" + raw
		}
		o, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("redis URL: %w", err)
		}
		return redis.NewClient(o), nil
	}
	co := &redis.ClusterOptions{}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "://") {
			p = "redis://" + p
		}
		o, err := redis.ParseURL(p)
		if err != nil {
			return nil, fmt.Errorf("redis cluster address %s: %w", redactURL(p), err)
		}
		co.Addrs = append(co.Addrs, o.Addr)
		co.Username, co.Password, co.TLSConfig = o.Username, o.Password, o.TLSConfig
	}
	return redis.NewClusterClient(co), nil
}

// redactURL drops a password from a URL before it is printed.
func redactURL(raw string) string {
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "://"); j >= 0 && j < i {
			return raw[:j+3] + "***" + raw[i:]
		}
	}
	return raw
}

func ownerID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// channelLimits is each channel's ceiling of calls in flight: its
// DISPATCHER_<CHANNEL>_CONCURRENCY, and for SMTP no more than the pool's
// connections (a send waiting for a connection would hold a slot idle).
func channelLimits(cfg Config) map[intent.Channel]int {
	out := map[intent.Channel]int{}
	for _, ch := range intent.Channels {
		n := cfg.Concurrency[string(ch)]
		if ch == intent.Email && cfg.Providers[string(ch)] == "smtp" && cfg.SMTP.PoolSize > 0 {
			n = min(n, cfg.SMTP.PoolSize)
		}
		out[ch] = n
	}
	return out
}
