package wechat

import (
	"fmt"
	"sync"
	"testing"

	"github.com/contactd/dispatcher/pkg/testenv"
)

// TestKeepAliveConnections: bursts of calls at once open no more
// connections than the client's concurrency, and the next burst reuses
// them (http.DefaultTransport would keep two).
func TestKeepAliveConnections(t *testing.T) {
	const conc, bursts = 8, 3
	srv := newServer(t)
	rdb, prefix := testenv.Redis(t)
	c := newClient(t, srv.URL(), rdb, prefix, func(c *Config) { c.Concurrency = conc })
	for b := range bursts {
		var wg sync.WaitGroup
		for i := range 2 * conc {
			wg.Go(func() {
				if _, err := c.Send(ctxT(t), message(fmt.Sprintf("I%d-%d", b, i))); err != nil {
					t.Errorf("Send: %v", err)
				}
			})
		}
		wg.Wait()
	}
	if got := srv.Conns(); got > conc {
		t.Errorf("%d bursts of %d calls opened %d connections, want at most %d", bursts, 2*conc, got, conc)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
