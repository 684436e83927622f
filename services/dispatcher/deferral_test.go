package main

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// TestDeferralsSurvive: deferred intents survive killing the process that
// schedules them, and wiping Redis, and are sent when due — once.
func TestDeferralsSurvive(t *testing.T) {
	h := newHarness(t, 12)
	var err error
	if h.profile, err = filepath.Abs("testdata/gap3s.yaml"); err != nil {
		t.Fatal(err)
	}
	o, _ := redis.ParseURL(h.redis)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	st, _ := store.New(rdb, store.Config{Prefix: h.prefix})
	g := sample.New(21, 1000, time.Now())

	// Two intents per debtor: the first is sent, the second must wait 3 s.
	batch := func(debtors, from int) []intent.Intent {
		var ins []intent.Intent
		var msgs []kafka.Message
		for round := 0; round < 2; round++ {
			for d := 0; d < debtors; d++ {
				in := g.Next()
				in.DebtorID = fmt.Sprintf("D-def-%d", from+d)
				ins = append(ins, in)
				msgs = append(msgs, kafka.Message{Key: []byte(in.DebtorID), Value: mustJSON(t, in)})
			}
		}
		h.produce(msgs)
		return ins
	}
	states := func(ins []intent.Intent) map[status.State]int {
		n := map[status.State]int{}
		for _, in := range ins {
			rec, err := st.GetFor(context.Background(), in.DebtorID, in.ID)
			if err == nil {
				n[rec.State]++
			}
		}
		return n
	}
	kill := func(p *process) {
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.cmd.Wait()
	}

	// 1. Kill the worker holding the deferrals, then wipe every key of the
	// dispatcher in Redis (records, counters, the scheduler's lease).
	first := batch(20, 0)
	a := h.spawn(t, "worker")
	// Killed once the 40 decisions are published (their offsets committed
	// after them): the deferrals are on Kafka, only Kafka, after the wipe.
	// (On a loaded machine a few may be due and sent already.)
	testenv.Eventually(t, 60*time.Second, "20 sent and 20 deferred, published", func() bool {
		n := states(first)
		return n[status.Sent] >= 20 && n[status.Sent]+n[status.Deferred] == 40 && n[status.Deferred] > 0 && h.allCommitted()
	})
	kill(a)
	keys, err := rdb.Keys(context.Background(), h.prefix+"*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys before the wipe: %d, %v", len(keys), err)
	}
	if err := rdb.Del(context.Background(), keys...).Err(); err != nil {
		t.Fatal(err)
	}

	b := h.spawn(t, "worker")
	testenv.Eventually(t, 90*time.Second, "all 40 sent after the wipe", func() bool { return states(first)[status.Sent] == 40 })

	// 2. Kill it too with deferrals pending; no wipe: the next process waits
	// for the dead scheduler's lease to lapse, then takes over.
	second := batch(5, 100)
	testenv.Eventually(t, 30*time.Second, "5 sent and 5 deferred", func() bool {
		n := states(second)
		return n[status.Sent] == 5 && n[status.Deferred] == 5
	})
	kill(b)
	c := h.spawn(t, "worker")
	testenv.Eventually(t, 90*time.Second, "all 10 sent after the scheduler was killed", func() bool { return states(second)[status.Sent] == 10 })

	sends, repeats := journalCounts(t, h.journal)
	for _, in := range append(first, second...) {
		if sends[in.ID] != 1 {
			t.Errorf("intent %s sent %d times, want 1", in.ID, sends[in.ID])
		}
	}
	// The deferred ones went out after their 3 s, their records (rebuilt
	// from reminders.status after the wipe) showing the deferral.
	waited := 0
	for _, in := range append(first[20:], second[5:]...) {
		rec, err := st.GetFor(context.Background(), in.DebtorID, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		var deferredAt, sentAt time.Time
		for _, e := range rec.Timeline {
			switch e.State {
			case status.Deferred:
				if deferredAt.IsZero() {
					deferredAt = e.At
				}
			case status.Sent:
				sentAt = e.At
			}
		}
		if deferredAt.IsZero() {
			continue
		}
		waited++
		if sentAt.Sub(deferredAt) < 3*time.Second {
			t.Errorf("intent %s: deferred at %s, sent at %s; want at least 3 s later", in.ID, deferredAt, sentAt)
		}
	}
	if waited != 25 {
		t.Errorf("only %d of 25 second intents show their deferral", waited)
	}
	t.Logf("sent %d, repeats answered %d; %d of 25 second intents show their deferral", len(sends), repeats, waited)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}
