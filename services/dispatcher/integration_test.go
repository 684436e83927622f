package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/httpapi"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// harness is a broker and a Redis shared by the services a test starts.
type harness struct {
	t       *testing.T
	brokers []string
	redis   string
	prefix  string
	journal string
	// extraEnv is added to the environment of spawned processes.
	extraEnv []string
	// vars is the environment in-process services read their config from.
	vars map[string]string
	// logs, when set, receives every started service's debug logs as JSON.
	logs io.Writer
	// profile is the policy profile: testdata/open.yaml unless a test says
	// otherwise, so delivery tests do not depend on the time of day.
	profile string
}

// testAPIKey is the admin key every test service accepts.
const testAPIKey = "test-admin-key-0123456789"

// testOptOutKeys signs and verifies the tests' opt-out links.
const testOptOutKeys = "t1:test-optout-secret-0123456789abcdef"

func newHarness(t *testing.T, partitions int) *harness {
	t.Helper()
	_, prefix := testenv.Redis(t)
	k := testenv.Kafka(t, partitions)
	return &harness{
		t: t, brokers: k.ListenAddrs(), redis: testenv.RedisURL(t), prefix: prefix,
		journal: t.TempDir() + "/sandbox.journal", profile: openProfile(t),
	}
}

// openProfile is the absolute path of testdata/open.yaml.
func openProfile(t *testing.T) string {
	p, err := filepath.Abs("testdata/open.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) config() Config {
	cfg, err := configFromEnv(func(k string) string {
		if v, ok := h.vars[k]; ok {
			return v
		}
		switch k {
		case "DISPATCHER_API_KEYS":
			return "admin:" + httpapi.HashAPIKey(testAPIKey)
		case "DISPATCHER_OPTOUT_KEYS":
			return testOptOutKeys
		}
		return ""
	}, true)
	if err != nil {
		h.t.Fatal(err)
	}
	cfg.Brokers, cfg.RedisURL, cfg.RedisPrefix = h.brokers, h.redis, h.prefix
	cfg.SandboxJournal = h.journal
	if h.vars["DISPATCHER_HTTP_ADDR"] == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	cfg.Profile = h.profile
	return cfg
}

// env is the environment of a dispatcher process started by a test.
func (h *harness) env() []string {
	return append([]string{
		"DISPATCHER_BE_MAIN=1",
		"DISPATCHER_KAFKA_BROKERS=" + strings.Join(h.brokers, ","),
		"DISPATCHER_REDIS_URL=" + h.redis,
		"DISPATCHER_REDIS_PREFIX=" + h.prefix,
		"DISPATCHER_SANDBOX_JOURNAL=" + h.journal,
		"DISPATCHER_SEND_TIMEOUT=1s",
		"DISPATCHER_LOG_LEVEL=warn",
		"DISPATCHER_HTTP_ADDR=127.0.0.1:0",
		"DISPATCHER_PROFILE=" + h.profile,
		"DISPATCHER_API_KEYS=admin:" + httpapi.HashAPIKey(testAPIKey),
		"DISPATCHER_OPTOUT_KEYS=" + testOptOutKeys,
	}, h.extraEnv...)
}

// running is an in-process service started by a test.
type running struct {
	*Service
	cancel context.CancelFunc
	done   chan error
	base   string
}

func (h *harness) start(roles Roles) *running {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if h.logs != nil {
		log = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := NewService(ctx, h.config(), roles, log)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	r := &running{Service: s, cancel: cancel, done: make(chan error, 1), base: "http://" + s.Addr()}
	go func() { r.done <- s.Run(ctx) }()
	h.t.Cleanup(func() { r.stop(h.t) })
	return r
}

// stop shuts the service down gracefully, once.
func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("service stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("service did not stop within 30s")
	}
	r.Close()
}

// produce writes values to reminders.intents with kafka-go, keyed by debtor.
func (h *harness) produce(msgs []kafka.Message) {
	h.t.Helper()
	w := kafkaio.NewWriter(h.brokers)
	defer w.Close()
	for i := range msgs {
		msgs[i].Topic = kafkaio.DefaultTopics.Intents
	}
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		if err := w.WriteMessages(context.Background(), msgs[:n]...); err != nil {
			h.t.Fatalf("produce: %v", err)
		}
		msgs = msgs[n:]
	}
}

// allCommitted reports whether group "dispatcher" committed every intent.
func (h *harness) allCommitted() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(h.brokers...)}
	topic := kafkaio.DefaultTopics.Intents
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return false
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	ends, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return false
	}
	got, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: "dispatcher", Topics: map[string][]int{topic: parts}})
	if err != nil {
		return false
	}
	committed := map[int]int64{}
	for _, p := range got.Topics[topic] {
		committed[p.Partition] = p.CommittedOffset
	}
	for _, p := range ends.Topics[topic] {
		if p.LastOffset > 0 && committed[p.Partition] < p.LastOffset {
			return false
		}
	}
	return true
}

// consumeAll reads every record of topic from the start.
func (h *harness) consumeAll(topic string, atLeast int) []*kgo.Record {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
		if len(out) >= atLeast && len(fs.Records()) == 0 || time.Now().After(deadline) {
			return out
		}
	}
}

// api makes a request with the test API key.
func api(t *testing.T, method, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return res
}

func getJSON(t *testing.T, url string, into any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if into != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, b)
		}
	}
	return res.StatusCode
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// malformed are bad inputs of different kinds, each with the error code its
// DLQ record must carry.
func malformed(t *testing.T, g *sample.Generator) []struct {
	value []byte
	code  string
	id    string // a usable id: its record must say rejected
} {
	type row = struct {
		value []byte
		code  string
		id    string
	}
	edit := func(f func(in *intent.Intent)) (intent.Intent, []byte) {
		in := g.Next()
		f(&in)
		return in, mustJSON(t, in)
	}
	var out []row
	for i := 0; i < 5; i++ {
		valid := mustJSON(t, g.Next())
		out = append(out, row{value: valid[:len(valid)/2], code: "malformed_json"})
		out = append(out, row{value: []byte("overdue notice for D-1"), code: "wrong_type"})
		bad := append([]byte(`{"id":"`), 0xff, 0xfe)
		out = append(out, row{value: append(bad, `"}`...), code: "invalid_utf8"})
		_, v := edit(func(in *intent.Intent) { in.ID = "" })
		out = append(out, row{value: v, code: "required"})
		in, v := edit(func(in *intent.Intent) { in.Channels = []intent.Channel{"fax"} })
		out = append(out, row{value: v, code: "unknown", id: in.ID})
		in, v = edit(func(in *intent.Intent) { in.Channels = []intent.Channel{intent.SMS}; in.To.Phone = "13800138000" })
		out = append(out, row{value: v, code: "invalid_format", id: in.ID})
		in, v = edit(func(in *intent.Intent) { in.Template = "final_demand" })
		out = append(out, row{value: v, code: "unknown", id: in.ID})
		in, v = edit(func(in *intent.Intent) { delete(in.Params, "name") })
		out = append(out, row{value: v, code: "missing_param", id: in.ID})
		in, v = edit(func(in *intent.Intent) {
			nb := in.ExpiresAt.Add(time.Hour)
			in.NotBefore = &nb
		})
		out = append(out, row{value: v, code: "out_of_order", id: in.ID})
		_, v = edit(func(in *intent.Intent) { in.Params["name"] = strings.Repeat("长", intent.MaxSize) })
		out = append(out, row{value: v, code: "too_large"})
	}
	return out
}

// TestPipeline: 1,000 intents, of which 50 malformed in different ways and
// 50 redeliveries of earlier ids, some written by a second Kafka client.
func TestPipeline(t *testing.T) {
	h := newHarness(t, 12)
	g := sample.New(42, 300, time.Now())

	var msgs []kafka.Message
	var valid []intent.Intent
	for i := 0; i < 900; i++ {
		in := g.Next()
		valid = append(valid, in)
		msgs = append(msgs, kafka.Message{Key: []byte(in.DebtorID), Value: mustJSON(t, in)})
	}
	bad := malformed(t, g)
	if len(bad) != 50 {
		t.Fatalf("%d malformed cases, want 50", len(bad))
	}
	expectCode := map[string]string{}
	for i, b := range bad {
		expectCode[string(b.value)] = b.code
		// spread them between the valid ones
		at := (i * 17) % len(msgs)
		msgs = append(msgs[:at], append([]kafka.Message{{Key: []byte(fmt.Sprintf("D-bad-%d", i)), Value: b.value}}, msgs[at:]...)...)
	}
	h.produce(msgs)

	// 50 redeliveries of earlier ids: 25 through kafka-go, 25 through
	// franz-go, written after their originals (same key, same partition).
	var dups []kafka.Message
	dupIDs := map[string]bool{}
	for i := 0; i < 50; i++ {
		in := valid[i*18]
		dupIDs[in.ID] = true
		dups = append(dups, kafka.Message{Key: []byte(in.DebtorID), Value: mustJSON(t, in)})
	}
	h.produce(dups[:25])
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.DefaultProduceTopic(kafkaio.DefaultTopics.Intents))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range dups[25:] {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: m.Key, Value: m.Value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()

	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	testenv.Eventually(t, 60*time.Second, "every intent committed", h.allCommitted)

	// Exactly one sandbox send per unique valid id.
	counts := svc.Sandbox.Counts()
	if len(counts) != 900 {
		t.Errorf("sandbox saw %d distinct ids, want 900", len(counts))
	}
	for _, in := range valid {
		if counts[in.ID] != 1 {
			t.Errorf("intent %s sent %d times, want 1", in.ID, counts[in.ID])
		}
	}
	if st := svc.Sandbox.Stats(); st.Sent != 900 || st.Repeats != 0 {
		t.Errorf("sandbox stats %+v, want 900 sent and no repeats", st)
	}

	// 50 DLQ records, each with the original bytes and a precise reason.
	dlq := h.consumeAll(kafkaio.DefaultTopics.DLQ, 50)
	if len(dlq) != 50 {
		t.Errorf("DLQ has %d records, want 50", len(dlq))
	}
	for _, r := range dlq {
		hdr := map[string]string{}
		for _, x := range r.Headers {
			hdr[x.Key] = string(x.Value)
		}
		want, ok := expectCode[string(r.Value)]
		if !ok {
			t.Errorf("DLQ record is not one of the malformed inputs: %.80q", r.Value)
			continue
		}
		if hdr[kafkaio.HeaderCode] != want {
			t.Errorf("DLQ code %q (reason %q), want %q", hdr[kafkaio.HeaderCode], hdr[kafkaio.HeaderReason], want)
		}
		if !strings.HasPrefix(hdr[kafkaio.HeaderReason], "invalid intent: ") || hdr[kafkaio.HeaderSourceTopic] != kafkaio.DefaultTopics.Intents || hdr[kafkaio.HeaderSourceOffset] == "" {
			t.Errorf("DLQ headers incomplete: %v", hdr)
		}
	}

	// Redeliveries: an event each, the original's record untouched.
	events := h.consumeAll(kafkaio.DefaultTopics.Status, 900*2+50)
	dupEvents, sentEvents := 0, map[string]int{}
	for _, r := range events {
		var ev status.Event
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("status event: %v", err)
		}
		if string(r.Key) != ev.ID {
			t.Errorf("status event keyed %q for intent %q", r.Key, ev.ID)
		}
		switch {
		case ev.Kind == status.KindDuplicate:
			if !dupIDs[ev.ID] || ev.Reason != status.ReasonDuplicate {
				t.Errorf("unexpected duplicate event %+v", ev)
			}
			dupEvents++
		case ev.State == status.Sent:
			sentEvents[ev.ID+"/"+fmt.Sprint(ev.Seq)]++
		}
	}
	if dupEvents != 50 {
		t.Errorf("%d duplicate events, want 50", dupEvents)
	}
	if len(sentEvents) != 900 {
		t.Errorf("%d distinct sent transitions on the status topic, want 900", len(sentEvents))
	}

	// Every status readable through the API, masked.
	for _, in := range valid {
		var rec status.Record
		if code := getJSON(t, svc.base+"/v1/intents/"+in.ID, &rec); code != 200 {
			t.Fatalf("GET intent %s: %d", in.ID, code)
		}
		if rec.State != status.Sent || len(rec.Timeline) != 2 || rec.Timeline[0].State != status.Sending {
			t.Errorf("intent %s: state %s with %d entries, want sent after sending", in.ID, rec.State, len(rec.Timeline))
		}
		raw := string(mustJSON(t, rec))
		for _, pii := range []string{in.To.Phone, in.To.Email, in.To.WeChatOpenID} {
			if strings.Contains(raw, pii) {
				t.Fatalf("intent %s record shows personal data unmasked", in.ID)
			}
		}
	}
	for _, b := range bad {
		if b.id == "" {
			continue
		}
		var rec status.Record
		if code := getJSON(t, svc.base+"/v1/intents/"+b.id, &rec); code != 200 || rec.State != status.Rejected {
			t.Errorf("rejected intent %s: HTTP %d state %q, want rejected", b.id, code, rec.State)
		}
	}
	if code := getJSON(t, svc.base+"/v1/intents/no-such-intent", nil); code != 404 {
		t.Errorf("unknown intent: HTTP %d, want 404", code)
	}

	// The counters agree.
	metrics := scrape(t, svc.base)
	for series, want := range map[string]float64{
		`dispatcher_decisions_total{reason="",state="sent"}`:                900,
		`dispatcher_decisions_total{reason="duplicate",state="suppressed"}`: 50,
		`dispatcher_decisions_total{reason="invalid",state="rejected"}`:     50,
		`dispatcher_dlq_total`:                                     50,
		`dispatcher_intents_consumed_total`:                        1000,
		`dispatcher_sends_total{channel="sms",provider="sandbox"}`: -1, // present
	} {
		got, ok := metrics[series]
		if !ok || (want >= 0 && got != want) {
			t.Errorf("metric %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
}

// scrape returns /metrics as series → value, summing a family over its
// labels under its bare name too.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		fmt.Sscan(line[i+1:], &v)
		series := line[:i]
		out[series] = v
		if j := strings.IndexByte(series, '{'); j > 0 {
			out[series[:j]] += v
		}
	}
	return out
}

// TestHTTPIntake: POST validates, writes to the topic, and the worker
// decides it; bad input gets a 400 with field errors and nothing is written.
func TestHTTPIntake(t *testing.T) {
	h := newHarness(t, 3)
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	g := sample.New(7, 10, time.Now())

	in := g.Next()
	res := api(t, http.MethodPost, svc.base+"/v1/intents", string(mustJSON(t, in)))
	var acc struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		StatusURL string `json:"status_url"`
	}
	json.NewDecoder(res.Body).Decode(&acc)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || acc.ID != in.ID {
		t.Fatalf("POST: %d %+v", res.StatusCode, acc)
	}
	testenv.Eventually(t, 20*time.Second, "the posted intent sent", func() bool {
		var rec status.Record
		return getJSON(t, svc.base+"/v1/intents/"+in.ID, &rec) == 200 && rec.State == status.Sent
	})
	var rec status.Record
	getJSON(t, svc.base+"/v1/intents/"+in.ID, &rec)
	if rec.Timeline[0].State != status.Accepted || rec.Last().State != status.Sent {
		t.Errorf("timeline %+v, want accepted … sent", rec.Timeline)
	}

	// The same id again is recognised, not written again.
	res = api(t, http.MethodPost, svc.base+"/v1/intents", string(mustJSON(t, in)))
	var again map[string]any
	json.NewDecoder(res.Body).Decode(&again)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || again["duplicate"] != true || again["state"] != "sent" {
		t.Errorf("repeat POST: %d %v, want 200 duplicate sent", res.StatusCode, again)
	}

	for _, tc := range []struct {
		name  string
		body  []byte
		code  int
		field string
	}{
		{"bad phone", mustJSON(t, func() intent.Intent {
			x := g.Next()
			x.Channels = []intent.Channel{intent.SMS}
			x.To.Phone = "+1"
			return x
		}()), 400, "to.phone"},
		{"truncated", []byte(`{"id":"x`), 400, ""},
		{"expired", mustJSON(t, func() intent.Intent { x := g.Next(); p := time.Now().Add(-time.Hour); x.ExpiresAt = &p; return x }()), 400, "expires_at"},
		{"too large", append([]byte(`{"id":"`), bytes.Repeat([]byte("a"), intent.MaxSize)...), 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := api(t, http.MethodPost, svc.base+"/v1/intents", string(tc.body))
			defer res.Body.Close()
			var p struct {
				Error  string              `json:"error"`
				Fields []intent.FieldError `json:"fields"`
			}
			json.NewDecoder(res.Body).Decode(&p)
			if res.StatusCode != tc.code || len(p.Fields) == 0 {
				t.Fatalf("HTTP %d %+v, want %d with field errors", res.StatusCode, p, tc.code)
			}
			if tc.field != "" && p.Fields[0].Field != tc.field {
				t.Errorf("field %q, want %q", p.Fields[0].Field, tc.field)
			}
		})
	}
	// Only the one good intent reached the topic.
	if recs := h.consumeAll(kafkaio.DefaultTopics.Intents, 1); len(recs) != 1 {
		t.Errorf("%d records on the intents topic, want 1", len(recs))
	}

	var ready map[string]any
	if code := getJSON(t, svc.base+"/readyz", &ready); code != 200 || ready["ready"] != true {
		t.Errorf("readyz: %d %v", code, ready)
	}
}

// journalCounts counts, per intent id, first sends and repeats in a sandbox
// journal.
func journalCounts(t *testing.T, path string) (sends map[string]int, repeats int) {
	t.Helper()
	lines, err := sandbox.ReadJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	sends = map[string]int{}
	for _, l := range lines {
		if l.Repeat {
			repeats++
		} else {
			sends[l.IntentID]++
		}
	}
	return sends, repeats
}

func produceSamples(t *testing.T, h *harness, n int, seed uint64) []intent.Intent {
	g := sample.New(seed, n/4, time.Now())
	var ins []intent.Intent
	var msgs []kafka.Message
	for i := 0; i < n; i++ {
		in := g.Next()
		ins = append(ins, in)
		msgs = append(msgs, kafka.Message{Key: []byte(in.DebtorID), Value: mustJSON(t, in)})
	}
	h.produce(msgs)
	return ins
}

// checkExactlyOnce asserts every intent was sent once and ended sent.
func checkExactlyOnce(t *testing.T, h *harness, st interface {
	GetFor(context.Context, string, string) (status.Record, error)
}, ins []intent.Intent) {
	t.Helper()
	sends, repeats := journalCounts(t, h.journal)
	lost, twice, unconfirmed, takenOver := 0, 0, 0, 0
	for _, in := range ins {
		switch n := sends[in.ID]; {
		case n == 0:
			lost++
		case n > 1:
			twice++
		}
		rec, err := st.GetFor(context.Background(), in.DebtorID, in.ID)
		if err != nil {
			t.Errorf("record of %s (debtor %s, handed to the provider %d times): %v", in.ID, in.DebtorID, sends[in.ID], err)
			continue
		}
		if len(rec.Timeline) >= 2 && rec.Timeline[0].Worker != rec.Last().Worker {
			takenOver++ // claimed by one worker, finished by another
		}
		if rec.State == status.SentUnconfirmed {
			unconfirmed++
		} else if rec.State != status.Sent {
			t.Errorf("intent %s ended %s, want sent", in.ID, rec.State)
		}
	}
	t.Logf("intents %d: sent once %d, lost %d, sent twice %d, taken over mid-send %d, repeats answered by the provider %d, unconfirmed %d",
		len(ins), len(sends), lost, twice, takenOver, repeats, unconfirmed)
	if lost > 0 || twice > 0 || len(sends) != len(ins) || unconfirmed > 0 {
		t.Errorf("lost %d, sent twice %d, unconfirmed %d, distinct sent %d of %d", lost, twice, unconfirmed, len(sends), len(ins))
	}
}

// TestRestartGraceful: a worker stopped mid-stream drains; the next one
// continues; nothing is lost or sent twice.
func TestRestartGraceful(t *testing.T) {
	h := newHarness(t, 12)
	ins := produceSamples(t, h, 3000, 11)

	a := h.start(Roles{Worker: true})
	testenv.Eventually(t, 30*time.Second, "the first worker to send 500", func() bool { return a.Sandbox.Stats().Sent >= 500 })
	a.stop(t)
	sentByA := a.Sandbox.Stats().Sent
	if sentByA >= int64(len(ins)) {
		t.Fatalf("the first worker sent everything (%d) before it was stopped; the test proves nothing", sentByA)
	}

	b := h.start(Roles{Worker: true})
	testenv.Eventually(t, 60*time.Second, "every intent committed", h.allCommitted)
	t.Logf("first worker sent %d, second %d", sentByA, b.Sandbox.Stats().Sent)
	checkExactlyOnce(t, h, b.Store(), ins)
}
