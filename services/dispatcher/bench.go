package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/httpapi"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

// benchResult is what `dispatcher bench` reports (as a table, or --json).
type benchResult struct {
	Mode        string  `json:"mode"` // drain or rate
	Intents     int     `json:"intents"`
	Redis       string  `json:"redis"` // "server <addr>" or "in-process (miniredis)"
	Broker      string  `json:"broker"`
	Profile     string  `json:"profile"`
	Partitions  int     `json:"partitions"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"intents_per_second"`
	OfferedRate float64 `json:"offered_rate,omitempty"`
	P50MS       float64 `json:"latency_p50_ms"`
	P95MS       float64 `json:"latency_p95_ms"`
	P99MS       float64 `json:"latency_p99_ms"`
	RoundTrips  float64 `json:"redis_round_trips_per_intent"`
	Sent        int64   `json:"sent"`
	Other       int64   `json:"decided_otherwise"`
	// Decisions other than sent, by state/reason.
	Decisions    map[string]int64 `json:"decisions_otherwise,omitempty"`
	KafkaCeiling float64          `json:"ceiling_kafka_consumer_per_second"`
	GateCeiling  float64          `json:"ceiling_gate_pipelined_per_second"`
	OfCeiling    float64          `json:"ratio_to_lower_ceiling"`
	// The provider side: the sandbox's latency, the most sends seen in
	// progress at once, and the ceiling min(gate ceiling, max in-flight ÷
	// mean latency) with our ratio to it.
	Provider          string  `json:"provider"`
	ProviderLatency   string  `json:"provider_latency"`
	MeanLatencyMS     float64 `json:"provider_latency_mean_ms"`
	InFlightPeak      int64   `json:"in_flight_peak"`
	MaxInFlight       int     `json:"max_in_flight"`
	InFlightCeiling   float64 `json:"ceiling_in_flight_per_second,omitempty"` // max in-flight ÷ mean latency; 0: no latency
	ProviderCeiling   float64 `json:"ceiling_provider_per_second,omitempty"`  // min(gate, in-flight)
	OfProviderCeiling float64 `json:"ratio_to_provider_ceiling,omitempty"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	AllocsPer         float64 `json:"allocs_per_intent"`
	BytesPer          float64 `json:"alloc_bytes_per_intent"`
}

// benchLatencies records produce-to-provider-call times.
type benchLatencies struct {
	produced sync.Map // intent id → time.Time
	mu       sync.Mutex
	samples  []time.Duration
	sent     atomic.Int64
	inFlight atomic.Int64 // provider calls in progress
	peak     atomic.Int64 // the most seen at once
}

type timedSender struct {
	worker.Sender
	l *benchLatencies
}

func (t timedSender) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	n := t.l.inFlight.Add(1)
	for {
		p := t.l.peak.Load()
		if n <= p || t.l.peak.CompareAndSwap(p, n) {
			break
		}
	}
	r, err := t.Sender.Send(ctx, m)
	t.l.inFlight.Add(-1)
	if err == nil {
		t.l.sent.Add(1)
		if v, ok := t.l.produced.LoadAndDelete(m.IntentID); ok {
			d := time.Since(v.(time.Time))
			t.l.mu.Lock()
			t.l.samples = append(t.l.samples, d)
			t.l.mu.Unlock()
		}
	}
	return r, err
}

// Name and Available are the wrapped sender's (its breaker's), so the
// worker sees the provider as it is.
func (t timedSender) Name() string {
	if n, ok := t.Sender.(interface{ Name() string }); ok {
		return n.Name()
	}
	return ""
}

func (t timedSender) Available() (bool, time.Time) {
	if a, ok := t.Sender.(interface{ Available() (bool, time.Time) }); ok {
		return a.Available()
	}
	return true, time.Time{}
}

func (l *benchLatencies) percentiles() (p50, p95, p99 float64) {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	l.mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0
	}
	slices.Sort(s)
	at := func(q float64) float64 {
		return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
	}
	return at(0.50), at(0.95), at(0.99)
}

// runBench measures the dispatcher end to end: intents through the broker,
// the gate on Redis and the sandbox channels, with the ceilings of the same
// run beside it (a bare Kafka consumer, the gate script pipelined).
func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 200000, "intents to drain (drain mode)")
	rate := fs.Float64("rate", 0, "offer this many intents per second instead, for --duration, and report latency at that load")
	duration := fs.Duration("duration", 30*time.Second, "how long to offer --rate")
	redisURL := fs.String("redis", "", "Redis URL (default DISPATCHER_REDIS_URL, else an in-process Redis, labelled so)")
	brokers := fs.String("brokers", "", "comma-separated brokers of a fresh cluster (default: an embedded broker)")
	partitions := fs.Int("partitions", 12, "partitions of reminders.intents")
	profile := fs.String("profile", "cn-bank", "policy profile")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	skipCeilings := fs.Bool("no-ceilings", false, "skip measuring the ceilings")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measured part to this file (go tool pprof)")
	maxInFlight := fs.Int("max-in-flight", 1024, "provider calls in flight at once in the worker (DISPATCHER_MAX_IN_FLIGHT)")
	laneQueue := fs.Int("lane-queue", 4096, "intents a partition holds uncommitted (DISPATCHER_LANE_QUEUE)")
	concurrency := fs.Int("concurrency", 0, "each channel's own ceiling (DISPATCHER_<CHANNEL>_CONCURRENCY); default: --max-in-flight, so the worker's bound is what is measured")
	provider := fs.String("provider", "sandbox", "sandbox (every channel), or twilio: SMS only, through the Twilio adapter to a local server speaking Twilio's REST API that answers after --provider-latency")
	providerLatency := fs.String("provider-latency", "0", "how long each provider call takes: a duration (200ms) or lognormal:P50:P99 (lognormal:150ms:800ms)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	latency, err := sandbox.ParseLatency(*providerLatency)
	if err != nil {
		return fmt.Errorf("--provider-latency: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res := benchResult{Mode: "drain", Intents: *count, Profile: *profile, Partitions: *partitions,
		Provider: "sandbox", ProviderLatency: latency.String(), MeanLatencyMS: float64(latency.Mean().Microseconds()) / 1000, MaxInFlight: *maxInFlight}
	if *rate > 0 {
		res.Mode, res.OfferedRate = "rate", *rate
	}

	// The broker.
	var bs []string
	if *brokers != "" {
		bs = strings.Split(*brokers, ",")
		res.Broker = "given: " + *brokers
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(*partitions))
		if err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		defer c.Close()
		bs = c.ListenAddrs()
		res.Broker = "embedded (kfake) " + strings.Join(bs, ",")
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkaio.NewClient(bs).Ensure(tctx, kafkaio.DefaultTopics.Specs(*partitions, 1)); err != nil {
		return err
	}

	// Redis.
	url := *redisURL
	if url == "" {
		url = getenv("DISPATCHER_REDIS_URL")
	}
	if url == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return err
		}
		defer mr.Close()
		url = "redis://" + mr.Addr()
		res.Redis = "in-process (miniredis) — not a real Redis; numbers not comparable"
	} else {
		res.Redis = "server " + redactURL(url)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := "bench" + hex.EncodeToString(rnd[:]) + ":"

	cfg, err := configFromEnv(func(string) string { return "" }, true)
	if err != nil {
		return err
	}
	cfg.Brokers, cfg.RedisURL, cfg.RedisPrefix, cfg.HTTPAddr, cfg.Profile = bs, url, prefix, "127.0.0.1:0", *profile
	cfg.APIKeys = "admin:" + httpapi.HashAPIKey(hex.EncodeToString(rnd[:]))
	cfg.OptOutKeys = "bench:" + strings.Repeat(hex.EncodeToString(rnd[:]), 4)
	cfg.SandboxForgetful = true
	cfg.SandboxLatency = latency
	cfg.MaxInFlight = *maxInFlight
	cfg.LaneQueue = *laneQueue
	smsOnly := false
	switch *provider {
	case "sandbox":
	case "twilio":
		if latency.P50 != latency.P99 {
			return errors.New("--provider twilio takes a fixed --provider-latency")
		}
		tw := twiliotest.NewServer("ACbench0000000000000000000000000000", "benchtoken0000000000000000000000")
		defer tw.Close()
		tw.Delay(latency.P50)
		tw.Forget(true)
		cfg.Providers["sms"] = "twilio"
		cfg.Twilio = TwilioConfig{AccountSID: "ACbench0000000000000000000000000000", AuthToken: "benchtoken0000000000000000000000", From: "+15005550006", BaseURL: tw.URL()}
		cfg.SandboxLatency = sandbox.Latency{}
		smsOnly = true
		res.Provider = "twilio (local server speaking its REST API)"
	default:
		return fmt.Errorf("--provider: %q is not sandbox or twilio", *provider)
	}
	for ch := range cfg.Concurrency {
		cfg.Concurrency[ch] = *maxInFlight
		if *concurrency > 0 {
			cfg.Concurrency[ch] = *concurrency
		}
	}
	cfg.Group = "bench-" + hex.EncodeToString(rnd[:])
	defer cleanRedis(url, prefix)

	rt := &store.RoundTrips{}
	lat := &benchLatencies{}
	roles := Roles{Worker: true, RedisHook: rt, WrapSender: func(_ intent.Channel, s worker.Sender) worker.Sender { return timedSender{Sender: s, l: lat} }}
	// Skip the rebuild: this Redis prefix is new and the topics are too.
	if err := markFresh(ctx, url, prefix); err != nil {
		return err
	}

	g := newBenchIntents()
	w := kafkaio.NewWriter(bs)
	defer w.Close()
	produce := func(n int) error {
		msgs := make([]kafka.Message, 0, n)
		now := time.Now()
		for i := 0; i < n; i++ {
			in := g.next()
			if smsOnly {
				in.Channels, in.Fallback = []intent.Channel{intent.SMS}, false
			}
			b, err := json.Marshal(in)
			if err != nil {
				return err
			}
			lat.produced.Store(in.ID, now)
			msgs = append(msgs, kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Key: []byte(in.DebtorID), Value: b, Time: now})
		}
		return w.WriteMessages(ctx, msgs...)
	}

	var svc *Service
	start := func() (context.CancelFunc, chan error, error) {
		s, err := NewService(ctx, cfg, roles, log)
		if err != nil {
			return nil, nil, err
		}
		svc = s
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Run(sctx) }()
		return stop, done, nil
	}
	committed := func() float64 { return metricSum(svc.Reg, "dispatcher_intents_committed_total") }
	decided := func() (sent, other int64) {
		sent = int64(metricSum(svc.Reg, "dispatcher_sends_total"))
		return sent, int64(metricSum(svc.Reg, "dispatcher_intents_committed_total")) - sent
	}

	var ms0, ms1 runtime.MemStats
	if res.Mode == "drain" {
		fmt.Fprintf(stderr, "producing %d intents…\n", *count)
		for left := *count; left > 0; left -= min(left, 5000) {
			if err := produce(min(left, 5000)); err != nil {
				return err
			}
		}
		// Latency from here on measures the backlog, not the service.
		fmt.Fprintf(stderr, "draining…\n")
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		rt0 := rt.Load()
		stop, done, err := start()
		if err != nil {
			return err
		}
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer f.Close()
		}
		t0 := time.Now()
		for committed() < float64(*count) {
			if ctx.Err() != nil {
				stop()
				return ctx.Err()
			}
			time.Sleep(20 * time.Millisecond)
		}
		res.Seconds = time.Since(t0).Seconds()
		if *cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		runtime.ReadMemStats(&ms1)
		res.RoundTrips = float64(rt.Load()-rt0) / float64(*count)
		stop()
		<-done
		svc.Close()
	} else {
		stop, done, err := start()
		if err != nil {
			return err
		}
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		rt0 := rt.Load()
		fmt.Fprintf(stderr, "offering %.0f intents/s for %s…\n", *rate, *duration)
		tick := 10 * time.Millisecond
		per := *rate * tick.Seconds()
		t0 := time.Now()
		carry, n := 0.0, 0
		tk := time.NewTicker(tick)
		for time.Since(t0) < *duration {
			<-tk.C
			carry += per
			k := int(carry)
			carry -= float64(k)
			if k > 0 {
				if err := produce(k); err != nil {
					stop()
					return err
				}
				n += k
			}
		}
		tk.Stop()
		for committed() < float64(n) && time.Since(t0) < *duration+30*time.Second {
			time.Sleep(20 * time.Millisecond)
		}
		res.Intents, res.Seconds = n, time.Since(t0).Seconds()
		runtime.ReadMemStats(&ms1)
		res.RoundTrips = float64(rt.Load()-rt0) / float64(max(n, 1))
		stop()
		<-done
		svc.Close()
	}
	res.PerSecond = float64(res.Intents) / res.Seconds
	res.InFlightPeak = lat.peak.Load()
	res.Decisions = metricByLabels(svc.Reg, "dispatcher_decisions_total")
	delete(res.Decisions, "sent/")
	res.Sent, res.Other = decided()
	res.P50MS, res.P95MS, res.P99MS = lat.percentiles()
	res.AllocsPer = float64(ms1.Mallocs-ms0.Mallocs) / float64(max(res.Intents, 1))
	res.BytesPer = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(max(res.Intents, 1))
	res.PeakRSSMB = peakRSS()

	if !*skipCeilings {
		n := min(res.Intents, 100000)
		fmt.Fprintf(stderr, "ceilings over %d intents…\n", n)
		if res.KafkaCeiling, err = kafkaCeiling(ctx, bs, n); err != nil {
			return fmt.Errorf("kafka ceiling: %w", err)
		}
		if res.GateCeiling, err = gateCeiling(ctx, cfg, url, prefix+"ceiling:", min(n, 50000), log); err != nil {
			return fmt.Errorf("gate ceiling: %w", err)
		}
		res.OfCeiling = res.PerSecond / min(res.KafkaCeiling, res.GateCeiling)
	}
	if mean := latency.Mean(); mean > 0 {
		res.InFlightCeiling = float64(res.MaxInFlight) / mean.Seconds()
	}
	res.ProviderCeiling = providerCeiling(res.GateCeiling, res.InFlightCeiling)
	if res.ProviderCeiling > 0 {
		res.OfProviderCeiling = res.PerSecond / res.ProviderCeiling
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printBench(stdout, res)
	return nil
}

func printBench(w io.Writer, r benchResult) {
	row := func(k, v string) { fmt.Fprintf(w, "  %-42s %s\n", k, v) }
	fmt.Fprintf(w, "dispatcher bench (%s)\n", r.Mode)
	row("intents", strconv.Itoa(r.Intents))
	row("profile / partitions", fmt.Sprintf("%s / %d", r.Profile, r.Partitions))
	row("redis", r.Redis)
	row("broker", r.Broker)
	if r.OfferedRate > 0 {
		row("offered rate", fmt.Sprintf("%.0f intents/s", r.OfferedRate))
	}
	row("end to end", fmt.Sprintf("%.0f intents/s (%.1f s)", r.PerSecond, r.Seconds))
	row("latency produce→provider p50/p95/p99", fmt.Sprintf("%.1f / %.1f / %.1f ms", r.P50MS, r.P95MS, r.P99MS))
	row("Redis round trips per intent", fmt.Sprintf("%.3f", r.RoundTrips))
	row("sent / decided otherwise", fmt.Sprintf("%d / %d", r.Sent, r.Other))
	if len(r.Decisions) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Decisions)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Decisions[k]))
		}
		row("decisions other than sent", strings.Join(parts, ", "))
	}
	if r.KafkaCeiling > 0 {
		row("ceiling: bare kafka-go consumer", fmt.Sprintf("%.0f intents/s", r.KafkaCeiling))
		row("ceiling: gate script pipelined", fmt.Sprintf("%.0f intents/s", r.GateCeiling))
		row("ours / lower ceiling", fmt.Sprintf("%.0f%%", 100*r.OfCeiling))
	}
	row("provider", r.Provider)
	row("provider latency (mean)", fmt.Sprintf("%s (%.1f ms)", r.ProviderLatency, r.MeanLatencyMS))
	row("in flight: peak / max", fmt.Sprintf("%d / %d", r.InFlightPeak, r.MaxInFlight))
	if r.InFlightCeiling > 0 {
		row("ceiling: max in-flight ÷ mean latency", fmt.Sprintf("%.0f intents/s", r.InFlightCeiling))
	}
	if r.ProviderCeiling > 0 {
		row("ceiling: min(gate, in-flight)", fmt.Sprintf("%.0f intents/s", r.ProviderCeiling))
		row("ours / that ceiling", fmt.Sprintf("%.0f%%", 100*r.OfProviderCeiling))
	}
	row("peak RSS", fmt.Sprintf("%.0f MB", r.PeakRSSMB))
	row("allocations per intent", fmt.Sprintf("%.0f (%.1f KiB)", r.AllocsPer, r.BytesPer/1024))
}

// providerCeiling is min(gate ceiling, in-flight ceiling), either of which
// may be unknown (0): the gate's when ceilings were skipped, the in-flight
// one when providers answer at once.
func providerCeiling(gate, inFlight float64) float64 {
	switch {
	case gate <= 0:
		return inFlight
	case inFlight <= 0:
		return gate
	}
	return min(gate, inFlight)
}

// benchIntents makes intents that are all in the allowed window now: each
// for a new debtor, in a time zone where it is early afternoon.
type benchIntents struct {
	g    *sample.Generator
	zone string
	n    int
}

func newBenchIntents() *benchIntents {
	off := 13 - time.Now().UTC().Hour() // hours east of UTC where it is 13:xx
	if off > 14 {
		off -= 24
	}
	if off < -12 {
		off += 24
	}
	zone := "Etc/GMT"
	switch {
	case off > 0:
		zone += "-" + strconv.Itoa(off) // the Etc/ names count westwards
	case off < 0:
		zone += "+" + strconv.Itoa(-off)
	}
	return &benchIntents{g: sample.New(uint64(time.Now().UnixNano()), 1<<30, time.Now()), zone: zone}
}

func (b *benchIntents) next() intent.Intent {
	in := b.g.Next()
	b.n++
	in.DebtorID = "DB-" + strconv.Itoa(b.n)
	in.DebtID = ""
	in.Timezone = b.zone
	return in
}

// kafkaCeiling is how fast a bare kafka-go consumer group reads n intents.
func kafkaCeiling(ctx context.Context, brokers []string, n int) (float64, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	r := kafka.NewReader(kafkaio.ReaderConfig(brokers, "ceiling-"+hex.EncodeToString(rnd[:]), kafkaio.DefaultTopics.Intents))
	defer r.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := r.FetchMessage(cctx); err != nil {
		return 0, err
	}
	t0 := time.Now()
	for i := 1; i < n; i++ {
		if _, err := r.FetchMessage(cctx); err != nil {
			return 0, err
		}
	}
	return float64(n-1) / time.Since(t0).Seconds(), nil
}

// gateCeiling is how fast Redis runs the gate script pipelined 100 at a time
// with nothing else to do.
func gateCeiling(ctx context.Context, cfg Config, url, prefix string, n int, log *slog.Logger) (float64, error) {
	cfg.RedisPrefix = prefix
	defer cleanRedis(url, prefix)
	if err := markFresh(ctx, url, prefix); err != nil {
		return 0, err
	}
	s, err := NewService(ctx, cfg, Roles{Worker: true}, log)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	g := newBenchIntents()
	now := time.Now()
	reqs := make([]store.GateRequest, n)
	for i := range reqs {
		reqs[i] = s.worker.GateRequest(g.next(), now)
	}
	if _, err := s.store.GateBatch(ctx, reqs[:1]); err != nil {
		return 0, err
	}
	t0 := time.Now()
	for i := 1; i < n; i += 100 {
		if _, err := s.store.GateBatch(ctx, reqs[i:min(n, i+100)]); err != nil {
			return 0, err
		}
	}
	return float64(n-1) / time.Since(t0).Seconds(), nil
}

// markFresh sets the state marker on a new prefix so the service skips the
// rebuild (the topics it would replay hold nothing of this run).
func markFresh(ctx context.Context, url, prefix string) error {
	rdb, err := redisClient(url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		return err
	}
	return st.MarkRebuilt(ctx, time.Now())
}

// cleanRedis deletes a run's keys.
func cleanRedis(url, prefix string) {
	rdb, err := redisClient(url)
	if err != nil {
		return
	}
	defer rdb.Close()
	ctx := context.Background()
	del := func(c *redis.Client) error {
		iter := c.Scan(ctx, 0, "*"+strings.TrimSuffix(prefix, ":")+"*", 5000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 5000 {
				c.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			c.Unlink(ctx, keys...)
		}
		return nil
	}
	switch c := rdb.(type) {
	case *redis.Client:
		_ = del(c)
	case *redis.ClusterClient:
		_ = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return del(m) })
	}
}

// metricSum adds up every series of a metric family.
func metricSum(reg prometheus.Gatherer, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}

// metricByLabels sums a counter by its state and reason labels, "state/reason".
func metricByLabels(reg prometheus.Gatherer, name string) map[string]int64 {
	out := map[string]int64{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			byName := map[string]string{}
			for _, l := range m.GetLabel() {
				byName[l.GetName()] = l.GetValue()
			}
			out[byName["state"]+"/"+byName["reason"]] += int64(m.GetCounter().GetValue())
		}
	}
	return out
}

// peakRSS is the process's peak resident set size in MB (Linux).
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
