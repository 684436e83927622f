package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/testenv"
)

// Three replicas sharing a limit of 20 sends per 200 ms window, on a real
// Redis: no window ever lets more than 20 through.
func TestSharedRate(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	var total atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for r := 0; r < 3; r++ {
		l := New(rdb, prefix, "sms", 20, 200*time.Millisecond)
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for l.Wait(ctx) == nil {
					total.Add(1)
				}
			}()
		}
	}
	// What each window granted, as Redis counts it (a grant taken at the end
	// of a window may be used just after it, so the callers' clocks are not
	// the measure): sampled while the windows live.
	granted := map[string]int{}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			keys, _ := rdb.Keys(context.Background(), prefix+"ratelimit:sms:*").Result()
			for _, k := range keys {
				if n, err := rdb.Get(context.Background(), k).Int(); err == nil && n > granted[k] {
					granted[k] = n
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-sampled
	if len(granted) < 4 {
		t.Fatalf("only %d windows seen", len(granted))
	}
	for k, n := range granted {
		if n > 20 {
			t.Errorf("window %s granted %d sends, limit 20", k, n)
		}
	}
	if total.Load() < 60 {
		t.Errorf("only %d sends in 1.2 s at 20 per 200 ms: the limiter starves", total.Load())
	}
	if New(rdb, prefix, "x", 0, time.Second) != nil {
		t.Error("a zero limit should mean no limiter")
	}
	var none *Limiter
	if err := none.Wait(ctx); err != nil {
		t.Error("a nil limiter must let everything through")
	}
}
