package testenv

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestAbsoluteClock(t *testing.T) {
	for _, c := range []struct {
		args []any
		bad  bool
	}{
		{[]any{"time"}, true},
		{[]any{"PEXPIREAT", "k", int64(1)}, true},
		{[]any{"expireat", "k", int64(1)}, true},
		{[]any{"set", "k", "v", "pxat", int64(1)}, true},
		{[]any{"getex", "k", "EXAT", int64(1)}, true},
		{[]any{"set", "k", "v", "px", int64(1)}, false},
		{[]any{"pexpire", "k", int64(1)}, false},
		{[]any{"zadd", "k", 1.0, "time"}, false},
		{nil, false},
	} {
		if got := AbsoluteClock(c.args) != ""; got != c.bad {
			t.Errorf("AbsoluteClock(%v) flagged %v, want %v", c.args, got, c.bad)
		}
	}
}

// recordingTB notes what the hook reports instead of failing the test.
type recordingTB struct {
	testing.TB
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) { r.errs = append(r.errs, format) }

// A FLUSHALL or FLUSHDB on the shared test server is refused before it runs
// and fails the test; other commands go through.
func TestSharedServerNotFlushed(t *testing.T) {
	rec := &recordingTB{TB: t}
	h := clockHook{rec}
	next := func(context.Context, redis.Cmder) error { return nil }
	for _, name := range []string{"flushall", "FLUSHDB"} {
		cmd := redis.NewStatusCmd(context.Background(), name)
		if err := h.ProcessHook(next)(context.Background(), cmd); err == nil {
			t.Errorf("%s ran on the shared server", name)
		}
	}
	if len(rec.errs) != 2 {
		t.Errorf("%d failures reported, want 2", len(rec.errs))
	}
	if err := h.ProcessHook(next)(context.Background(), redis.NewStatusCmd(context.Background(), "del", "k")); err != nil {
		t.Errorf("DEL refused: %v", err)
	}
}
