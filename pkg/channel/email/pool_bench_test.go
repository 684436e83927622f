package email

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel/email/smtptest"
)

// BenchmarkPool sends through the pool against a relay whose every new
// connection costs a greeting delay (banner delay, reverse DNS, connection
// checks), with the sessions reused and with a connection per message, in
// the same run. Senders outnumber the pool, as the worker's in-flight sends
// do; messages/s is the number to compare.
//
//	go test -run '^$' -bench Pool -benchtime 400x ./pkg/channel/email/
func BenchmarkPool(b *testing.B) {
	const (
		poolSize = 4
		senders  = 16
		greeting = 20 * time.Millisecond
	)
	for _, bc := range []struct {
		name string
		max  int
	}{
		{"reused", DefaultMaxMessagesPerConn},
		{"connection-per-message", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := smtptest.NewServer(b, smtptest.WithAuth("dispatcher", "secret"), smtptest.WithGreetingDelay(greeting))
			m, err := New(Config{
				Addr: srv.Addr(), Username: "dispatcher", Password: "secret", From: testFrom,
				TLSConfig: srv.TLSConfig(), Timeout: 30 * time.Second, PoolSize: poolSize, MaxMessagesPerConn: bc.max,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range senders {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if _, err := m.Send(context.Background(), numbered(int(i))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(srv.Stats().Conns), "conns")
		})
	}
}
