package worker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// BenchmarkGate measures gate decisions against a real Redis (cn-bank
// profile, every intent for a new debtor so each is allowed and reserves a
// slot: the hot path). It reports decisions/s and Redis round trips per
// decision, and beside them the ceiling of the same script pipelined 100 at
// a time.
//
//	go test -run '^$' -bench Gate -benchtime 20000x ./services/dispatcher/internal/worker/
func BenchmarkGate(b *testing.B) {
	o, err := redis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	o.PoolSize = 32
	rdb := redis.NewClient(o)
	defer rdb.Close()
	rt := &store.RoundTrips{}
	rdb.AddHook(rt)
	prefix := testenv.Prefix(b)
	defer func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 5000 {
				rdb.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			rdb.Unlink(ctx, keys...)
		}
	}()
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	sb, _ := sandbox.New(sandbox.Config{})
	w := replica(b, rdb, prefix, loadProfile(b, "cn-bank"), sb, "bench", func() time.Time { return now })
	st := w.Store.(*store.Store)
	var seq atomic.Int64
	next := func() store.GateRequest {
		n := seq.Add(1)
		in := sampleIntent(fmt.Sprintf("I-%d", n))
		in.DebtorID, in.DebtID = fmt.Sprintf("D-%d", n), fmt.Sprintf("L-%d", n)
		in.Channels = []intent.Channel{intent.SMS, intent.WeChat}
		in.Fallback, in.To.WeChatOpenID = true, "oX1abcdefgh"
		req, err := w.gateRequest(in, now, w.attempt())
		if err != nil {
			b.Fatal(err)
		}
		return req
	}
	// Load the script once, as a running worker has.
	if _, err := st.Gate(context.Background(), next()); err != nil {
		b.Fatal(err)
	}
	report := func(b *testing.B, start int64) {
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		b.ReportMetric(float64(rt.Load()-start)/float64(b.N), "roundtrips/op")
	}
	check := func(b *testing.B, g store.GateResult, err error) {
		if err != nil {
			b.Fatal(err)
		}
		if g.Outcome != store.Claimed {
			b.Fatalf("outcome %s, want claimed on the hot path", g.Outcome)
		}
	}

	b.Run("sequential", func(b *testing.B) {
		start := rt.Load()
		for b.Loop() {
			g, err := st.Gate(context.Background(), next())
			check(b, g, err)
		}
		report(b, start)
	})
	b.Run("parallel", func(b *testing.B) {
		start := rt.Load()
		b.SetParallelism(6) // 12 goroutines on 2 cores: one per partition lane
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				g, err := st.Gate(context.Background(), next())
				check(b, g, err)
			}
		})
		report(b, start)
	})
	b.Run("pipelined-ceiling", func(b *testing.B) {
		start := rt.Load()
		batch := make([]store.GateRequest, 0, 100)
		flush := func() {
			res, err := st.GateBatch(context.Background(), batch)
			for _, g := range res {
				check(b, g, err)
			}
			batch = batch[:0]
		}
		for b.Loop() {
			if batch = append(batch, next()); len(batch) == cap(batch) {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
		report(b, start)
	})
}
