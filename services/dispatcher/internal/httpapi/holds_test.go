package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

// Holds through the API against the real gate: a cancel hold ends the
// debtor's deferred intents at once and every later one at the gate; a
// pause defers them to its end; a debt's hold touches that debt only; a
// lifted hold lets them through; holds survive Redis losing them (rebuilt
// from their topic records); and no intent whose decision starts after the
// 201 is sent.
func TestHolds(t *testing.T) {
	ctx := context.Background()
	night := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC) // 23:00 in Shanghai
	var clockMu sync.Mutex
	clock := night
	now := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	setClock := func(t time.Time) { clockMu.Lock(); clock = t; clockMu.Unlock() }
	s, st := newServer(t, "cn-bank", night)
	s.Now = now
	pub := &recordingPublisher{}
	s.Publisher, s.Canceler, s.Holds = pub, st, st
	s.OptOuts = &optout.Recorder{Topic: kafkaio.DefaultTopics.OptOuts, Pub: pub, Hot: st}
	sb, w1, w2 := twoWorkers(t, s, st, now)
	msg := func(id, debtor, debt string) kafka.Message {
		body := intentWith(id, func(m map[string]any) {
			m["debtor_id"], m["debt_id"], m["channels"], m["fallback"] = debtor, debt, []string{"sms"}, false
			delete(m, "not_before")
			delete(m, "expires_at")
		})
		return kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Key: []byte(debtor), Value: []byte(body)}
	}
	decide := func(w *worker.Worker, m kafka.Message) {
		t.Helper()
		for try := 0; try < 500; try++ {
			if _, err := w.Decide(ctx, m); err == nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Errorf("%s never decided", m.Key)
	}
	state := func(id string) status.State {
		rec, err := st.Get(ctx, id)
		if err != nil {
			return ""
		}
		return rec.State
	}
	post := func(debtor, body string) (int, HoldCreated) {
		rr := serveAs(t, s, writeKey, "POST", "/v1/debtors/"+debtor+"/holds", body)
		var h HoldCreated
		_ = json.Unmarshal(rr.Body.Bytes(), &h)
		return rr.Code, h
	}

	// Three intents deferred overnight (two on L-1, one on L-2), then the
	// debt L-1 is paid at 23:40.
	for i, debt := range []string{"L-1", "L-1", "L-2"} {
		decide(w1, msg(fmt.Sprintf("I-H%d", i), "D-H", debt))
	}
	setClock(night.Add(40 * time.Minute))
	code, h := post("D-H", `{"debt_id":"L-1","reason":"paid"}`)
	if code != http.StatusCreated || h.Canceled != 2 || h.Hold.DebtID != "L-1" || !h.Hold.Active {
		t.Fatalf("hold on L-1: %d %+v, want 201 with 2 canceled", code, h)
	}
	if state("I-H0") != status.Canceled || state("I-H1") != status.Canceled || state("I-H2") != status.Deferred {
		t.Errorf("states %s %s %s, want canceled canceled deferred", state("I-H0"), state("I-H1"), state("I-H2"))
	}
	// At 08:00 the scheduler releases what is left; a new L-1 intent comes.
	setClock(night.Add(9*time.Hour + 20*time.Minute)) // 08:20 Shanghai
	decide(w1, msg("I-H2", "D-H", "L-2"))
	decide(w1, msg("I-H3", "D-H", "L-1"))
	if state("I-H2") != status.Sent || state("I-H3") != status.Canceled || sb.Counts()["I-H3"] != 0 {
		t.Errorf("I-H2 %s (want sent), I-H3 %s (want canceled at the gate)", state("I-H2"), state("I-H3"))
	}

	// Holds survive Redis losing them: the hash is rebuilt from the records
	// published on the opt-out topic.
	if err := st.RemoveOptOut(ctx, "D-H", optout.HoldPrefix+h.Hold.ID); err != nil {
		t.Fatal(err)
	}
	for _, m := range pub.snapshot(kafkaio.DefaultTopics.OptOuts) {
		var o optout.OptOut
		if err := json.Unmarshal(m.Value, &o); err != nil {
			t.Fatal(err)
		}
		if err := optout.Apply(ctx, st, o, m.Value); err != nil {
			t.Fatal(err)
		}
	}
	decide(w1, msg("I-H4", "D-H", "L-1"))
	if state("I-H4") != status.Canceled {
		t.Errorf("after the rebuild, an L-1 intent is %s, want canceled", state("I-H4"))
	}
	// Lifted: L-1 goes again (an hour after the last contact: the gap).
	if rr := serveAs(t, s, writeKey, "DELETE", "/v1/debtors/D-H/holds/"+h.Hold.ID, ""); rr.Code != http.StatusOK {
		t.Fatalf("lift: %d %s", rr.Code, rr.Body)
	}
	setClock(night.Add(11 * time.Hour))
	decide(w1, msg("I-H5", "D-H", "L-1"))
	if state("I-H5") != status.Sent {
		t.Errorf("after the lift: %s, want sent", state("I-H5"))
	}

	// A promise to pay: paused until Friday, then sent.
	friday := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC) // 10:00 Friday in Shanghai
	code, h = post("D-P", `{"reason":"promise_to_pay","until":"2026-11-27T10:00:00+08:00"}`)
	if code != http.StatusCreated || h.Canceled != 0 || h.Hold.Until == nil || !h.Hold.Until.Equal(friday) {
		t.Fatalf("pause: %d %+v", code, h)
	}
	decide(w1, msg("I-P1", "D-P", "L-9"))
	rec, _ := st.Get(ctx, "I-P1")
	if last := rec.Timeline[len(rec.Timeline)-1]; rec.State != status.Deferred || last.Rule != "hold" || last.Until == nil || !last.Until.Equal(friday) {
		t.Errorf("paused intent: %s %+v, want deferred by hold until Friday 10:00", rec.State, last)
	}
	setClock(friday.Add(time.Minute))
	decide(w1, msg("I-P1", "D-P", "L-9"))
	if state("I-P1") != status.Sent {
		t.Errorf("after the pause: %s, want sent", state("I-P1"))
	}
	if rr := serveAs(t, s, readKey, "GET", "/v1/debtors/D-P/holds", ""); rr.Code != http.StatusOK {
		t.Errorf("list: %d", rr.Code)
	} else {
		var l struct{ Holds []Hold }
		_ = json.Unmarshal(rr.Body.Bytes(), &l)
		if len(l.Holds) != 1 || l.Holds[0].Active {
			t.Errorf("holds %+v, want the ended pause, inactive", l.Holds)
		}
	}

	// The race: 100 intents of D-R decided by two workers while a hold is
	// posted; none whose decision starts after the 201 is sent.
	setClock(friday.Add(2 * time.Hour))
	var replied atomic.Bool
	var lateSent, lateNotCanceled, late, started atomic.Int64
	// The first 20 decisions are made, then the hold is posted while the
	// next 40 go on; the last 40 start after its 201.
	posting, answered := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	ids := make(chan string, 100)
	for i := 0; i < 100; i++ {
		ids <- fmt.Sprintf("I-R%03d", i)
	}
	close(ids)
	for _, w := range []*worker.Worker{w1, w2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				switch n := started.Add(1); {
				case n > 60:
					<-answered // surely after the 201
				case n > 20:
					<-posting // racing the hold's request
				}
				after := replied.Load()
				// Each on its own debt, so the daily caps do not decide first.
				decide(w, msg(id, "D-R", "L-"+id))
				if after {
					late.Add(1)
					if sb.Counts()[id] > 0 {
						lateSent.Add(1)
					}
					if state(id) != status.Canceled {
						lateNotCanceled.Add(1)
					}
				}
			}
		}()
	}
	for started.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	close(posting)
	if code, _ := post("D-R", `{"reason":"deceased"}`); code != http.StatusCreated {
		t.Fatalf("hold during the race: %d", code)
	}
	replied.Store(true)
	close(answered)
	wg.Wait()
	if n := lateSent.Load(); n != 0 {
		t.Errorf("%d intents sent whose decision started after the hold's 201", n)
	}
	if n := lateNotCanceled.Load(); n != 0 {
		t.Errorf("%d intents decided after the hold's 201 and not canceled by it", n)
	}
	if late.Load() == 0 {
		t.Error("no decision started after the hold: the race was not run")
	}
	t.Logf("race: %d of 100 decisions started after the hold's 201; all canceled", late.Load())
}

// snapshot returns the published messages of a topic.
func (p *recordingPublisher) snapshot(topic string) []kafka.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []kafka.Message
	for _, m := range p.msgs {
		if m.Topic == topic {
			out = append(out, m)
		}
	}
	return out
}
