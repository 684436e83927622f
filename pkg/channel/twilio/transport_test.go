package twilio

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
)

func TestAttemptSendState(t *testing.T) {
	cases := []struct {
		name        string
		conn, wrote bool
		writeEnded  bool
		want        sendState
	}{
		{name: "no connection", want: unsent},
		{name: "written in full", conn: true, wrote: true, writeEnded: true, want: sent},
		{name: "writing failed part way", conn: true, writeEnded: true, want: unsent},
		{name: "writing had begun, its end unknown", conn: true, want: maybeSent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &attempt{done: make(chan struct{})}
			a.conn.Store(tc.conn)
			a.wrote.Store(tc.wrote)
			if tc.writeEnded {
				close(a.done)
			}
			o := a.outcome("", &url.Error{Op: "Post", URL: "https://api.twilio.com/2010-04-01/Accounts/" + testSID + "/Messages.json", Err: context.DeadlineExceeded})
			if o.sent != tc.want {
				t.Errorf("sent = %v, want %v", o.sent, tc.want)
			}
			if !errors.Is(o.err, context.DeadlineExceeded) || strings.Contains(o.err.Error(), testSID) {
				t.Errorf("err = %v, want the cause without the URL", o.err)
			}
		})
	}
}

// TestKeepAliveConnections counts, at the Twilio-shaped server, the
// connections the adapter opens: one for many calls in a row, and no more
// than its concurrency for calls at once, kept for the next burst.
func TestKeepAliveConnections(t *testing.T) {
	t.Run("calls in a row share one connection", func(t *testing.T) {
		srv := newServer(t)
		sms := newSMS(t, config(srv))
		for i := range 20 {
			if _, err := sms.Send(context.Background(), channel.Message{IntentID: fmt.Sprintf("I%d", i), To: debtor, Locale: "en", Text: "Your loan ending 0042 is overdue."}); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		if got := srv.Conns(); got != 1 {
			t.Errorf("20 calls in a row opened %d connections, want 1", got)
		}
	})
	t.Run("bursts stay within the concurrency and reuse it", func(t *testing.T) {
		const conc, bursts = 8, 4
		srv := newServer(t)
		srv.Delay(20 * time.Millisecond) // calls of a burst overlap
		cfg := config(srv)
		cfg.Concurrency = conc
		sms := newSMS(t, cfg)
		for b := range bursts {
			var wg sync.WaitGroup
			for i := range 2 * conc {
				wg.Go(func() {
					m := channel.Message{IntentID: fmt.Sprintf("I%d-%d", b, i), To: debtor, Locale: "en", Text: "Your loan ending 0042 is overdue."}
					if _, err := sms.Send(context.Background(), m); err != nil {
						t.Errorf("Send: %v", err)
					}
				})
			}
			wg.Wait()
		}
		// http.DefaultTransport would keep 2 of each burst's connections
		// and open the rest again for the next.
		if got := srv.Conns(); got > conc {
			t.Errorf("%d bursts of %d calls opened %d connections, want at most %d", bursts, 2*conc, got, conc)
		}
		if err := sms.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
