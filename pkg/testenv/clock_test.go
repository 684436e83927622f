package testenv

import "testing"

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
