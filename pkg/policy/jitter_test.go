package policy

import (
	"fmt"
	"testing"
	"time"
)

func TestJittered(t *testing.T) {
	p := profile(t, "cn-bank")
	next := local(shanghai, "2026-11-24 08:00:00")
	minutes := map[int]int{}
	for i := range 1000 {
		key := fmt.Sprintf("01JD3X%020d", i)
		got := p.Jittered(next, key)
		if got.Before(next) || !got.Before(next.Add(p.Jitter)) {
			t.Fatalf("Jittered(%s) = %v, outside [%v, %v)", key, got, next, next.Add(p.Jitter))
		}
		if again := p.Jittered(next, key); !again.Equal(got) {
			t.Fatalf("Jittered(%s) = %v, then %v", key, got, again)
		}
		minutes[int(got.Sub(next)/time.Minute)]++
	}
	if len(minutes) < 25 {
		t.Errorf("1000 keys landed in %d distinct minutes of 30, want at least 25", len(minutes))
	}
	for m, n := range minutes {
		if n > 100 { // uniform is about 33 a minute
			t.Errorf("minute %d got %d of 1000 keys", m, n)
		}
	}
}

func TestJitteredEdges(t *testing.T) {
	next := local(shanghai, "2026-11-24 08:00:00")
	cases := []struct {
		name   string
		jitter time.Duration
		check  func(got time.Time) bool
	}{
		{name: "no jitter leaves next alone", jitter: 0, check: func(got time.Time) bool { return got.Equal(next) }},
		{name: "under a second", jitter: 500 * time.Millisecond, check: func(got time.Time) bool {
			return !got.Before(next) && got.Before(next.Add(500*time.Millisecond))
		}},
		{name: "not a whole number of seconds", jitter: 1500 * time.Millisecond, check: func(got time.Time) bool {
			return !got.Before(next) && got.Before(next.Add(1500*time.Millisecond))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Profile{Jitter: tc.jitter}
			for i := range 200 {
				if got := p.Jittered(next, fmt.Sprint(i)); !tc.check(got) {
					t.Fatalf("Jittered(%d) = %v with jitter %v", i, got, tc.jitter)
				}
			}
		})
	}
}
