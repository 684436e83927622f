package scheduler

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
)

type capturePub struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (p *capturePub) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, msgs...)
	return nil
}

// A deferred intent canceled while it waits (the tombstone the API writes on
// reminders.deferred) leaves the backlog at once and is never re-injected;
// the others are, when due.
func TestCanceledDeferralsAreDropped(t *testing.T) {
	now := time.Date(2026, 11, 23, 15, 40, 0, 0, time.UTC)
	clock := now
	pub := &capturePub{}
	s := New(Config{Owner: "test"}, nil, pub, nil, slog.New(slog.DiscardHandler), func() time.Time { return clock }, prometheus.NewRegistry())
	due := now.Add(8 * time.Hour)
	for _, id := range []string{"I-1", "I-2", "I-3"} {
		b, _ := json.Marshal(status.Deferral{ID: id, DebtorID: "D-1", Due: due, Rule: "cn.quiet-hours", Seq: 2, Intent: []byte(`{"id":"` + id + `"}`)})
		s.apply(kafka.Message{Topic: kafkaio.DefaultTopics.Deferred, Key: []byte(id), Value: b})
	}
	if n := testutil.ToFloat64(s.backlog); n != 3 {
		t.Fatalf("backlog %v, want 3", n)
	}
	s.apply(kafka.Message{Topic: kafkaio.DefaultTopics.Deferred, Key: []byte("I-2")}) // canceled at 23:40
	if n := testutil.ToFloat64(s.backlog); n != 2 {
		t.Errorf("backlog after the cancellation %v, want 2", n)
	}
	clock = due.Add(time.Second)
	s.fire(context.Background())
	var ids []string
	for _, m := range pub.msgs {
		var in struct{ ID string }
		_ = json.Unmarshal(m.Value, &in)
		ids = append(ids, in.ID)
	}
	if len(ids) != 2 || ids[0] == "I-2" || ids[1] == "I-2" {
		t.Errorf("re-injected %v, want I-1 and I-3 only", ids)
	}
	if n := testutil.ToFloat64(s.backlog); n != 0 {
		t.Errorf("backlog after the release %v, want 0", n)
	}
}
