package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

type idleReader struct{}

func (idleReader) FetchMessage(ctx context.Context) (kafka.Message, error) {
	<-ctx.Done()
	return kafka.Message{}, ctx.Err()
}
func (idleReader) CommitMessages(context.Context, ...kafka.Message) error { return nil }

// twoWorkers are two worker replicas deciding on the server's store and
// profile, sending through one sandbox, on the clock now.
func twoWorkers(t *testing.T, s *Server, st *store.Store, now func() time.Time) (*sandbox.Sandbox, *worker.Worker, *worker.Worker) {
	t.Helper()
	sb, err := sandbox.New(sandbox.Config{Idempotent: true})
	if err != nil {
		t.Fatal(err)
	}
	senders := map[intent.Channel]worker.Sender{}
	for _, ch := range intent.Channels {
		senders[ch] = sb
	}
	newWorker := func(owner string) *worker.Worker {
		w, err := worker.New(worker.Config{Owner: owner}, worker.Deps{Reader: idleReader{}, Publisher: nopPublisher{}, Store: st,
			Templates: s.Templates.(worker.Templates), Profile: s.Profile, Senders: senders, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	return sb, newWorker("w1"), newWorker("w2")
}

// A canceled intent is never sent: deferred and canceled, then released by
// the scheduler; canceled before it arrived; and, under a race with two
// workers deciding it, never both sent and answered 200.
func TestCancelAgainstTheGate(t *testing.T) {
	ctx := context.Background()
	night := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC) // 23:00 in Shanghai
	morning := night.Add(10 * time.Hour)
	clock := night
	var clockMu sync.Mutex
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	s, st := newServer(t, "cn-bank", night)
	s.Now = now
	pub := &recordingPublisher{}
	s.Publisher, s.Canceler = pub, st
	sb, w1, w2 := twoWorkers(t, s, st, now)
	msg := func(id, debtor string) kafka.Message {
		body := intentWith(id, func(m map[string]any) {
			m["debtor_id"], m["channels"], m["fallback"] = debtor, []string{"sms"}, false
			delete(m, "not_before")
			delete(m, "expires_at")
		})
		return kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Key: []byte(debtor), Value: []byte(body)}
	}
	cancel := func(id, body string) (int, status.Record) {
		rr := serveAs(t, s, writeKey, "POST", "/v1/intents/"+id+"/cancel", body)
		var rec status.Record
		_ = json.Unmarshal(rr.Body.Bytes(), &rec)
		return rr.Code, rec
	}

	// Deferred overnight, canceled at 23:40, released at 08:00: not sent.
	m := msg("I-NIGHT", "D-N")
	if _, err := w1.Decide(ctx, m); err != nil {
		t.Fatal(err)
	}
	if rec, _ := st.Get(ctx, "I-NIGHT"); rec.State != status.Deferred {
		t.Fatalf("state %s, want deferred overnight", rec.State)
	}
	code, rec := cancel("I-NIGHT", `{"reason":"paid","note":"paid at 23:40"}`)
	if code != http.StatusOK || rec.State != status.Canceled || rec.Reason != "paid" {
		t.Fatalf("cancel: %d %+v", code, rec)
	}
	last := rec.Timeline[len(rec.Timeline)-1]
	if !strings.HasPrefix(last.Detail, "canceled by api-key:") || !strings.HasSuffix(last.Detail, ": paid at 23:40") || strings.Contains(last.Detail, writeKey) {
		t.Errorf("the timeline does not name the actor: %q", last.Detail)
	}
	var tomb, event bool
	for _, p := range pub.msgs {
		tomb = tomb || p.Topic == kafkaio.DefaultTopics.Deferred && string(p.Key) == "I-NIGHT" && p.Value == nil
		event = event || p.Topic == kafkaio.DefaultTopics.Status && string(p.Key) == "I-NIGHT"
	}
	if !tomb || !event {
		t.Errorf("published tombstone %v, status event %v; want both", tomb, event)
	}
	clockMu.Lock()
	clock = morning
	clockMu.Unlock()
	released := m
	released.Headers = append(released.Headers, kafka.Header{Key: kafkaio.HeaderReinjected, Value: []byte("1")})
	if _, err := w1.Decide(ctx, released); err != nil {
		t.Fatal(err)
	}
	if n := sb.Counts()["I-NIGHT"]; n != 0 {
		t.Errorf("a canceled intent was sent %d times", n)
	}
	if code, rec := cancel("I-NIGHT", `{"reason":"paid"}`); code != http.StatusOK || rec.State != status.Canceled {
		t.Errorf("repeated cancel: %d %s, want 200 canceled", code, rec.State)
	}

	// Canceled before it arrives.
	if code, _ := cancel("I-EARLY", `{"reason":"settled","debtor_id":"D-E"}`); code != http.StatusOK {
		t.Fatalf("pre-cancel: %d", code)
	}
	if _, err := w1.Decide(ctx, msg("I-EARLY", "D-E")); err != nil {
		t.Fatal(err)
	}
	if n := sb.Counts()["I-EARLY"]; n != 0 {
		t.Errorf("an intent canceled before it arrived was sent %d times", n)
	}
	if code, _ := cancel("I-EARLY", `{"reason":"settled","debtor_id":"D-OTHER"}`); code != http.StatusConflict {
		t.Errorf("cancel naming another debtor: %d, want 409", code)
	}
	// Sent: 409 with its state.
	if _, err := w1.Decide(ctx, msg("I-SENT", "D-S")); err != nil {
		t.Fatal(err)
	}
	if rr := serveAs(t, s, writeKey, "POST", "/v1/intents/I-SENT/cancel", `{"reason":"paid"}`); rr.Code != http.StatusConflict {
		t.Errorf("cancel of a sent intent: %d %s", rr.Code, rr.Body)
	}

	// A send in flight (its lease live) cannot be recalled: 409 sending, and
	// the record stays the worker's.
	if _, err := st.Claim(ctx, store.ClaimRequest{ID: "I-FLIGHT", DebtorID: "D-F", Owner: "w-busy", Now: morning, LeaseUntil: morning.Add(time.Minute),
		Target: status.Sending, Channel: "sms", Entry: status.Entry{At: morning, State: status.Sending}}); err != nil {
		t.Fatal(err)
	}
	if rr := serveAs(t, s, writeKey, "POST", "/v1/intents/I-FLIGHT/cancel", `{"reason":"paid"}`); rr.Code != http.StatusConflict || !strings.Contains(rr.Body.String(), `"sending"`) {
		t.Errorf("cancel in flight: %d %s, want 409 naming sending", rr.Code, rr.Body)
	}
	if state, _ := st.Get(ctx, "I-FLIGHT"); state.State != status.Sending {
		t.Errorf("after a refused cancel the record is %s, want sending", state.State)
	}

	// The race: 60 intents, each decided by two workers while it is
	// canceled. A 200 and a send never go together.
	var wg sync.WaitGroup
	codes := make([]int, 60)
	for i := range codes {
		id, debtor := fmt.Sprintf("I-RACE-%02d", i), fmt.Sprintf("D-R%02d", i)
		m := msg(id, debtor)
		if _, _, err := st.Accept(ctx, id, debtor, "overdue_notice", status.Entry{At: morning, State: status.Accepted}); err != nil {
			t.Fatal(err)
		}
		wg.Add(3)
		for _, w := range []*worker.Worker{w1, w2} {
			go func() {
				defer wg.Done()
				for try := 0; try < 200; try++ {
					// An error: the other worker holds the intent; try again.
					if _, err := w.Decide(ctx, m); err == nil {
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		go func() {
			defer wg.Done()
			codes[i], _ = cancel(id, `{"reason":"paid"}`)
		}()
	}
	wg.Wait()
	var canceled, sent int
	for i, code := range codes {
		id := fmt.Sprintf("I-RACE-%02d", i)
		n := sb.Counts()[id]
		switch {
		case code == http.StatusOK && n > 0:
			t.Errorf("%s: canceled (200) and sent %d times", id, n)
		case code == http.StatusOK:
			canceled++
		case code == http.StatusConflict && n == 1:
			sent++
		default:
			t.Errorf("%s: cancel %d, sent %d times", id, code, n)
		}
	}
	t.Logf("race: %d canceled, %d sent first (409)", canceled, sent)
}
