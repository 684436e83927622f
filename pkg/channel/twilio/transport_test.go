package twilio

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
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
