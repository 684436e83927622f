//go:build chaos

// The chaos suite: separate worker processes, a real Redis server, one
// broker, and faults — processes killed, Redis restarted and flushed, a
// provider failing, the broker killed. Run with `make test-chaos`. Each
// scenario prints its counts and fails on any loss or duplicate.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/contactd/dispatcher/pkg/channel/twilio/twiliotest"
	"github.com/contactd/dispatcher/pkg/channel/wechat/wechattest"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// redisServer is a Redis server of the test's own, which it may stop,
// restart (keeping its AOF) and flush.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server")
	}
	r := &redisServer{t: t, port: freePort(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port)})
	defer c.Close()
	testenv.Eventually(r.t, 10*time.Second, "redis-server to start", func() bool { return c.Ping(context.Background()).Err() == nil })
}

func (r *redisServer) stop() {
	if r.cmd != nil && r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		_ = r.cmd.Wait()
	}
}

func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port)})
}

// chaosWorker is one worker process with a known HTTP port.
type chaosWorker struct {
	p    *process
	port int
	env  []string
}

func (h *harness) spawnWorker(t *testing.T, extra ...string) *chaosWorker {
	w := &chaosWorker{port: freePort(t), env: extra}
	w.p = h.spawnEnv(t, append(append([]string{}, extra...), "DISPATCHER_HTTP_ADDR=127.0.0.1:"+strconv.Itoa(w.port)), "worker")
	t.Cleanup(func() {
		if t.Failed() {
			if w.p.cmd.ProcessState == nil {
				_ = w.p.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump
				time.Sleep(time.Second)
				_ = w.p.cmd.Process.Kill()
				_ = w.p.cmd.Wait()
			}
			out := w.p.stderr.String()
			os.WriteFile(fmt.Sprintf("/tmp/chaos-worker-%d.log", w.port), []byte(out), 0o644)
			t.Logf("worker on :%d said (last 3000 bytes):\n%s", w.port, out[max(0, len(out)-3000):])
		}
	})
	return w
}

func (h *harness) spawnEnv(t *testing.T, extra []string, args ...string) *process {
	saved := h.extraEnv
	h.extraEnv = append(append([]string{}, saved...), extra...)
	defer func() { h.extraEnv = saved }()
	return h.spawn(t, args...)
}

func (w *chaosWorker) kill() {
	_ = w.p.cmd.Process.Signal(syscall.SIGKILL)
	_ = w.p.cmd.Wait()
}

func (w *chaosWorker) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(w.port) + path
}

func (w *chaosWorker) ready() int {
	res, err := http.Get(w.url("/readyz"))
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// wechatEnv points a worker's WeChat channel at the test's WeChat server.
func wechatEnv(wx *wechattest.Server) []string {
	return []string{
		"DISPATCHER_WECHAT_PROVIDER=wechat", "DISPATCHER_WECHAT_APPID=" + wxApp, "DISPATCHER_WECHAT_SECRET=" + wxSec,
		"DISPATCHER_WECHAT_BASE_URL=" + wx.URL(),
		"DISPATCHER_WECHAT_TEMPLATE_IDS=overdue_notice=TPL-OVERDUE,payment_due_soon=TPL-SOON,promise_to_pay_reminder=TPL-PROMISE",
		"DISPATCHER_KAFKA_SESSION_TIMEOUT=2s", "DISPATCHER_SEND_TIMEOUT=2s", "DISPATCHER_RETRY_BASE=500ms", "DISPATCHER_RETRY_MAX=3s",
		"DISPATCHER_RETRY_LIMIT=40", "DISPATCHER_BREAKER_MIN_REQUESTS=10", "DISPATCHER_BREAKER_COOL_DOWN=2s",
	}
}

// wechatIntents makes n intents on WeChat, each for its own debtor.
func wechatIntents(seed uint64, n int, tag string) []intent.Intent {
	g := sample.New(seed, 1000, time.Now())
	out := make([]intent.Intent, n)
	for i := range out {
		in := g.Next()
		in.DebtorID = fmt.Sprintf("D-%s-%06d", tag, i)
		in.To.WeChatOpenID = fmt.Sprintf("oX1%s%07d", tag, i)
		in.Channels, in.Fallback = []intent.Channel{intent.WeChat}, false
		out[i] = in
	}
	return out
}

// tally counts what the provider delivered and what the records say.
type tally struct {
	sent, delivered, twice, lost, unconfirmed, deferred, other, dlq, repeats int
}

func (c tally) String() string {
	return fmt.Sprintf("intents sent %d, delivered by the provider %d, duplicates %d, lost %d, unconfirmed %d, deferred %d, other %d, dlq %d, repeats recognised by the provider %d",
		c.sent, c.delivered, c.twice, c.lost, c.unconfirmed, c.deferred, c.other, c.dlq, c.repeats)
}

func count(t *testing.T, h *harness, st *store.Store, wx *wechattest.Server, ins []intent.Intent) tally {
	t.Helper()
	var c tally
	per := map[string]int{}
	for _, s := range wx.Sends() {
		switch {
		case s.Delivered():
			per[s.Body.ClientMsgID]++
		case s.Repeat:
			c.repeats++
		}
	}
	for _, in := range ins {
		switch n := per[in.ID]; {
		case n == 1:
			c.delivered++
		case n > 1:
			c.twice++
		}
		rec, err := st.GetFor(context.Background(), in.DebtorID, in.ID)
		switch {
		case err != nil:
			c.lost++
		case rec.State == status.Sent || rec.State == status.Delivered:
			c.sent++
		case rec.State == status.SentUnconfirmed:
			c.unconfirmed++
		case rec.State == status.Deferred:
			c.deferred++
		default:
			c.other++
			if c.other <= 5 {
				b, _ := json.Marshal(rec)
				t.Logf("not sent: %s", b)
			}
		}
	}
	c.dlq = len(h.consumeAllQuick(kafkaio.DefaultTopics.DLQ))
	return c
}

// consumeAllQuick reads a topic that may well be empty.
func (h *harness) consumeAllQuick(topic string) []kafka.Message {
	var out []kafka.Message
	_, _, _ = kafkaio.NewClient(h.brokers).Replay(context.Background(), h.brokers, topic, 1000, func(ms []kafka.Message) error {
		out = append(out, ms...)
		return nil
	})
	return out
}

func assertClean(t *testing.T, c tally, n int) {
	t.Helper()
	t.Logf("counts: %s", c)
	if c.delivered != n || c.twice != 0 || c.lost != 0 || c.dlq != 0 || c.sent+c.unconfirmed != n {
		t.Errorf("want all %d delivered once, none lost, none twice, nothing in the DLQ", n)
	}
}

func produceChunks(t *testing.T, h *harness, ins []intent.Intent) {
	for i := 0; i < len(ins); i += 2000 {
		h.produceIntents(ins[i:min(len(ins), i+2000)])
	}
}

// TestChaosKills: 3 worker processes consume 20,000 intents while every 2 s
// one of them is killed with SIGKILL and started again.
func TestChaosKills(t *testing.T) {
	h := newHarnessWith(t, 12, kfake.GroupMinSessionTimeout(time.Second))
	wx := wechattest.NewServer(wxApp, wxSec)
	defer wx.Close()
	env := wechatEnv(wx)
	ins := wechatIntents(1, 20000, "K")
	produceChunks(t, h, ins)
	ws := []*chaosWorker{h.spawnWorker(t, env...), h.spawnWorker(t, env...), h.spawnWorker(t, env...)}
	st := h.store(t)
	kills := 0
	deadline := time.Now().Add(3 * time.Minute)
	for wx.Delivered() < len(ins) || !h.allCommitted() {
		if time.Now().After(deadline) {
			t.Fatalf("not done after 3 minutes: %s", count(t, h, st, wx, ins))
		}
		time.Sleep(2 * time.Second)
		if wx.Delivered() >= len(ins) {
			continue
		}
		i := kills % len(ws)
		ws[i].kill()
		ws[i] = h.spawnWorker(t, env...)
		kills++
	}
	t.Logf("%d workers killed", kills)
	assertClean(t, count(t, h, st, wx, ins), len(ins))
}

// TestChaosRedis: Redis is stopped mid-run (the workers report not ready
// and wait), started again (its AOF keeps the data), then flushed (the
// workers rebuild opt-outs, records and deferrals from Kafka); nothing is
// lost or sent twice, and an opt-out recorded before the flush still holds.
func TestChaosRedis(t *testing.T) {
	rs := startRedis(t)
	h := newHarnessWith(t, 12, kfake.GroupMinSessionTimeout(time.Second))
	h.redis = rs.url()
	var err error
	if h.profile, err = filepath.Abs("testdata/gap3s.yaml"); err != nil {
		t.Fatal(err)
	}
	wx := wechattest.NewServer(wxApp, wxSec)
	defer wx.Close()
	env := append(wechatEnv(wx), "DISPATCHER_LOG_LEVEL=info")
	st := h.store(t)

	// An opt-out, on the topic and in Redis, before anything happens.
	rdb := rs.client()
	defer rdb.Close()
	rec := &optout.Recorder{Topic: kafkaio.DefaultTopics.OptOuts, Pub: kafkaio.NewWriter(h.brokers), Hot: st}
	if err := rec.Record(context.Background(), optout.OptOut{DebtorID: "D-OPTED", Channel: "all", Source: optout.SourceBankRequest, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	ws := []*chaosWorker{h.spawnWorker(t, env...), h.spawnWorker(t, env...), h.spawnWorker(t, env...)}
	testenv.Eventually(t, 30*time.Second, "workers ready", func() bool { return ws[0].ready() == 200 })

	// Two intents per debtor: the second waits 3 s (the gap rule), so there
	// are always deferrals in flight.
	first := wechatIntents(2, 3000, "R")
	second := wechatIntents(3, 3000, "R")
	for i := range second {
		second[i].DebtorID = first[i].DebtorID
	}
	all := append(append([]intent.Intent{}, first...), second...)
	produceChunks(t, h, first)
	produceChunks(t, h, second)
	testenv.Eventually(t, 60*time.Second, "some delivered", func() bool { return wx.Delivered() > 500 })

	rs.stop()
	testenv.Eventually(t, 15*time.Second, "a worker to report not ready", func() bool { return ws[1].ready() == http.StatusServiceUnavailable })
	before := wx.Delivered()
	time.Sleep(2 * time.Second)
	stalled := wx.Delivered() - before
	rs.start()
	testenv.Eventually(t, 30*time.Second, "the worker ready again", func() bool { return ws[1].ready() == 200 })

	testenv.Eventually(t, 60*time.Second, "more delivered", func() bool { return wx.Delivered() > 3500 })
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	opted := wechatIntents(4, 1, "OPT")[0]
	opted.DebtorID = "D-OPTED"
	h.produceIntents([]intent.Intent{opted})

	testenv.Eventually(t, 120*time.Second, "everything decided", func() bool {
		if time.Now().Second()%10 == 0 {
			lag, _ := kafkaio.NewClient(h.brokers).Lag(context.Background(), "dispatcher", kafkaio.DefaultTopics.Intents)
			t.Logf("delivered %d of %d, committed all %v, lag %v", wx.Delivered(), len(all), h.allCommitted(), lag)
			time.Sleep(time.Second)
		}
		return wx.Delivered() >= len(all) && h.allCommitted()
	})
	time.Sleep(time.Second)
	r, err := st.GetFor(context.Background(), opted.DebtorID, opted.ID)
	if err != nil || r.State != status.Suppressed || r.Reason != status.ReasonOptedOut {
		t.Errorf("intent for the opted-out debtor after the flush: %v %s/%s, want suppressed/opted_out", err, r.State, r.Reason)
	}
	t.Logf("delivered while Redis was down: %d", stalled)
	if stalled > 50 {
		t.Errorf("%d delivered while Redis was down: workers must wait", stalled)
	}
	assertClean(t, count(t, h, st, wx, all), len(all))
}

// TestChaosProvider: WeChat fails for 30 s — errors, then timeouts. Its
// breaker opens; SMS keeps sending; after recovery every WeChat intent is
// delivered exactly once.
func TestChaosProvider(t *testing.T) {
	h := newHarnessWith(t, 12, kfake.GroupMinSessionTimeout(time.Second))
	wx := wechattest.NewServer(wxApp, wxSec)
	defer wx.Close()
	tw := twiliotest.NewServer(twSID, twToken)
	defer tw.Close()
	env := append(wechatEnv(wx), "DISPATCHER_SMS_PROVIDER=twilio", "DISPATCHER_TWILIO_ACCOUNT_SID="+twSID,
		"DISPATCHER_TWILIO_AUTH_TOKEN="+twToken, "DISPATCHER_TWILIO_FROM=+15005550006", "DISPATCHER_TWILIO_BASE_URL="+tw.URL())
	ws := []*chaosWorker{h.spawnWorker(t, env...), h.spawnWorker(t, env...), h.spawnWorker(t, env...)}
	st := h.store(t)
	testenv.Eventually(t, 30*time.Second, "workers ready", func() bool { return ws[0].ready() == 200 })

	wx.Fail(1<<30, -1) // system busy, for every request until cleared
	failing := time.Now()
	chat := wechatIntents(5, 2000, "P")
	sms := numbered(sample.New(6, 100, time.Now()), 2000, []intent.Channel{intent.SMS}, false, 90)
	produceChunks(t, h, append(append([]intent.Intent{}, chat...), sms...))

	opened, switched := false, false
	smsDuring := 0
	for time.Since(failing) < 30*time.Second {
		if time.Since(failing) > 15*time.Second && !switched {
			wx.ClearFaults()
			wx.Delay(3 * time.Second) // now timeouts: longer than the 2 s deadline
			switched = true
		}
		for _, w := range ws {
			if res, err := http.Get(w.url("/metrics")); err == nil {
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if strings.Contains(string(b), `dispatcher_breaker_state{provider="wechat"} 2`) {
					opened = true
				}
			}
		}
		smsDuring = len(tw.Created())
		time.Sleep(time.Second)
	}
	wx.ClearFaults()
	testenv.Eventually(t, 120*time.Second, "every intent decided after recovery", func() bool {
		return wx.Delivered() >= len(chat) && len(tw.Created()) >= len(sms) && h.allCommitted()
	})
	t.Logf("breaker seen open: %v; SMS sent while WeChat was failing: %d of %d", opened, smsDuring, len(sms))
	if !opened {
		t.Error("the WeChat breaker never showed open")
	}
	if smsDuring < len(sms)/2 {
		t.Errorf("only %d SMS sent while WeChat failed: one provider's outage held up another", smsDuring)
	}
	perNumber := map[string]int{}
	for _, r := range tw.Created() {
		perNumber[r.Form.Get("To")]++
	}
	for _, in := range sms {
		if perNumber[in.To.Phone] != 1 {
			t.Errorf("SMS %s delivered %d times", in.ID, perNumber[in.To.Phone])
		}
	}
	assertClean(t, count(t, h, st, wx, chat), len(chat))
}

// TestChaosBroker: the broker runs in its own process with a data dir and
// synchronous writes; it is killed with SIGKILL and started again mid-run;
// the workers reconnect and go on without loss.
func TestChaosBroker(t *testing.T) {
	dataDir, port := t.TempDir(), freePort(t)
	startBroker := func() *process {
		cmd := exec.Command(os.Args[0], "broker", "--port", strconv.Itoa(port), "--data-dir", dataDir, "--sync-writes", "--min-session-timeout", "1s")
		cmd.Env = append(os.Environ(), "DISPATCHER_BE_MAIN=1")
		p := &process{cmd: cmd}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		return p
	}
	b := startBroker()
	brokers := []string{"127.0.0.1:" + strconv.Itoa(port)}
	testenv.Eventually(t, 30*time.Second, "the broker", func() bool {
		m, err := kafkaio.NewClient(brokers).Missing(context.Background(), kafkaio.DefaultTopics.All())
		return err == nil && len(m) == 0
	})
	_, prefix := testenv.Redis(t)
	h := &harness{t: t, brokers: brokers, redis: testenv.RedisURL(t), prefix: prefix, journal: t.TempDir() + "/j", profile: openProfile(t)}
	wx := wechattest.NewServer(wxApp, wxSec)
	defer wx.Close()
	env := wechatEnv(wx)
	ws := []*chaosWorker{h.spawnWorker(t, env...), h.spawnWorker(t, env...)}
	st := h.store(t)
	ins := wechatIntents(7, 10000, "B")
	produceChunks(t, h, ins[:6000])
	testenv.Eventually(t, 60*time.Second, "some delivered", func() bool { return wx.Delivered() > 1000 })

	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	_ = b.cmd.Wait()
	time.Sleep(2 * time.Second)
	startBroker()
	testenv.Eventually(t, 30*time.Second, "the broker back", func() bool { return kafkaio.NewClient(brokers).Ping(context.Background()) == nil })
	produceChunks(t, h, ins[6000:])
	testenv.Eventually(t, 120*time.Second, "everything decided", func() bool { return wx.Delivered() >= len(ins) && h.allCommitted() })
	_ = ws
	assertClean(t, count(t, h, st, wx, ins), len(ins))
}

// store opens the harness's Redis store.
func (h *harness) store(t *testing.T) *store.Store {
	o, err := redis.ParseURL(h.redis)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	st, err := store.New(rdb, store.Config{Prefix: h.prefix})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newHarnessWith is newHarness with broker options.
func newHarnessWith(t *testing.T, partitions int, opts ...kfake.Opt) *harness {
	t.Helper()
	_, prefix := testenv.Redis(t)
	k := testenv.Kafka(t, partitions, opts...)
	return &harness{
		t: t, brokers: k.ListenAddrs(), redis: testenv.RedisURL(t), prefix: prefix,
		journal: t.TempDir() + "/sandbox.journal", profile: openProfile(t),
	}
}

// TestChaosFlushCaps: SMS to 500 debtors, three intents each, through 3
// workers under a one-hour gap per debtor and 2 SMS a day per number,
// where three debtors share each number (a family phone); Redis is flushed
// (FLUSHALL) while the first wave is being sent, and the second and third
// waves arrive after it. The workers rebuild the contact streams — the
// debtors' and the numbers' — from reminders.status before deciding again:
// every debtor gets at most one SMS (the others deferred by the gap), every
// number exactly its cap of two (the third debtor deferred by the number's
// rule), no intent is sent twice.
func TestChaosFlushCaps(t *testing.T) {
	rs := startRedis(t)
	h := newHarnessWith(t, 12, kfake.GroupMinSessionTimeout(time.Second))
	h.redis = rs.url()
	var err error
	if h.profile, err = filepath.Abs("testdata/gap1h.yaml"); err != nil {
		t.Fatal(err)
	}
	tw := twiliotest.NewServer(twSID, twToken)
	defer tw.Close()
	env := []string{"DISPATCHER_SMS_PROVIDER=twilio", "DISPATCHER_TWILIO_ACCOUNT_SID=" + twSID,
		"DISPATCHER_TWILIO_AUTH_TOKEN=" + twToken, "DISPATCHER_TWILIO_FROM=+15005550006", "DISPATCHER_TWILIO_BASE_URL=" + tw.URL(),
		"DISPATCHER_KAFKA_SESSION_TIMEOUT=2s", "DISPATCHER_SEND_TIMEOUT=2s", "DISPATCHER_LOG_LEVEL=info",
		"DISPATCHER_MAX_IN_FLIGHT=4"}
	// 3 workers × 4 sends of 50 ms: ~240 SMS a second, so the first wave
	// is still going when Redis is flushed.
	tw.Delay(50 * time.Millisecond)
	ws := []*chaosWorker{h.spawnWorker(t, env...), h.spawnWorker(t, env...), h.spawnWorker(t, env...)}
	testenv.Eventually(t, 30*time.Second, "workers ready", func() bool { return ws[0].ready() == 200 })

	const debtors, perPhone = 500, 3
	var waves [3][]intent.Intent
	debtorOf := map[string]string{} // intent id → debtor
	for w := range waves {
		waves[w] = numbered(sample.New(uint64(20+w), debtors, time.Now()), debtors, []intent.Channel{intent.SMS}, false, 77)
		for i := range waves[w] {
			waves[w][i].To.Phone = fmt.Sprintf("+8613977%06d", i/perPhone)
			debtorOf[waves[w][i].ID] = waves[w][i].DebtorID
		}
	}
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	startDay := time.Now().In(shanghai).Format(time.DateOnly)
	want := 0 // the cap of each number: 2, or fewer debtors at it
	for n := 0; n < debtors; n += perPhone {
		want += min(2, debtors-n, perPhone)
	}
	produceChunks(t, h, waves[0])
	testenv.Eventually(t, 60*time.Second, "some of the first wave sent", func() bool { return len(tw.Created()) > debtors/10 })
	rdb := rs.client()
	defer rdb.Close()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	atFlush := len(tw.Created())
	produceChunks(t, h, waves[1])
	produceChunks(t, h, waves[2])
	var committed bool
	defer func() {
		if t.Failed() {
			t.Logf("at the end: %d SMS sent of %d expected, every intent committed: %v", len(tw.Created()), want, committed)
		}
	}()
	testenv.Eventually(t, 120*time.Second, "every intent decided", func() bool {
		committed = h.allCommitted()
		return committed && len(tw.Created()) >= want
	})
	time.Sleep(2 * time.Second) // anything late would show now
	numberCap := 2
	if time.Now().In(shanghai).Format(time.DateOnly) != startDay {
		numberCap = 4 // the run crossed the numbers' midnight: a new day's two
	}

	perNumber, perDebtor := map[string]int{}, map[string]int{}
	for _, r := range tw.Created() {
		cb, _ := url.Parse(r.Form.Get("StatusCallback"))
		perNumber[r.Form.Get("To")]++
		perDebtor[debtorOf[cb.Query().Get("intent_id")]]++
	}
	st := h.store(t)
	states := map[string]int{}
	for _, wave := range waves {
		for _, in := range wave {
			rec, err := st.GetFor(context.Background(), in.DebtorID, in.ID)
			if err != nil {
				states["missing"]++
				continue
			}
			states[string(rec.State)+"/"+rec.Last().Rule]++
		}
	}
	twice, overCap, underCap := 0, 0, 0
	for _, in := range waves[0] {
		if perDebtor[in.DebtorID] > 1 {
			twice++
		}
	}
	for n := 0; n < debtors; n += perPhone {
		switch c := perNumber[waves[0][n].To.Phone]; {
		case c > numberCap:
			overCap++
		case c < min(2, debtors-n, perPhone):
			underCap++
		}
	}
	// The same intent sent twice (a redelivery after the flush) or two
	// intents of one debtor (the gap not holding)?
	perIntent := map[string]int{}
	for _, r := range tw.Created() {
		cb, _ := url.Parse(r.Form.Get("StatusCallback"))
		perIntent[cb.Query().Get("intent_id")]++
	}
	sameIntent := 0
	for _, n := range perIntent {
		if n > 1 {
			sameIntent++
		}
	}
	t.Logf("SMS sent %d (%d before the flush, %d expected) to %d debtors at %d numbers; debtors messaged twice inside the gap %d (one intent sent twice: %d); numbers over their cap %d, under it %d; records %v",
		len(tw.Created()), atFlush, want, len(perDebtor), len(perNumber), twice, sameIntent, overCap, underCap, states)
	if twice != 0 || sameIntent != 0 || overCap != 0 || underCap != 0 {
		t.Errorf("want every debtor messaged at most once, no intent twice, and every number at its cap, never over")
	}
}
