package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
)

func TestParseLatency(t *testing.T) {
	tests := []struct {
		in      string
		want    Latency
		wantErr string // part of the error; "" none
	}{
		{in: "200ms", want: Latency{200 * time.Millisecond, 200 * time.Millisecond}},
		{in: "0", want: Latency{}},
		{in: " 1s ", want: Latency{time.Second, time.Second}},
		{in: "lognormal:150ms:800ms", want: Latency{150 * time.Millisecond, 800 * time.Millisecond}},
		{in: "lognormal:100ms:100ms", want: Latency{100 * time.Millisecond, 100 * time.Millisecond}},
		{in: "", wantErr: "want a duration"},
		{in: "fast", wantErr: "want a duration"},
		{in: "-5ms", wantErr: "negative"},
		{in: "lognormal:150ms", wantErr: "lognormal:P50:P99"},
		{in: "lognormal:abc:800ms", wantErr: "durations"},
		{in: "lognormal:150ms:800", wantErr: "durations"},
		{in: "lognormal:0s:800ms", wantErr: "P50 must be positive"},
		{in: "lognormal:800ms:150ms", wantErr: "P99 must not be below P50"},
		{in: "normal:150ms:800ms", wantErr: "want a duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLatency(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseLatency(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseLatency(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if back, err := ParseLatency(got.String()); err != nil || back != got {
				t.Errorf("%v does not read back: %v, %v", got, back, err)
			}
		})
	}
}

func TestLatencyShape(t *testing.T) {
	ms := time.Millisecond
	l := Latency{P50: 150 * ms, P99: 800 * ms}
	near := func(got, want time.Duration) bool { return got-want < ms && want-got < ms }
	if got := l.at(0); !near(got, 150*ms) {
		t.Errorf("median %v, want 150ms", got)
	}
	if got := l.at(z99); !near(got, 800*ms) {
		t.Errorf("99th percentile %v, want 800ms", got)
	}
	// σ = ln(800/150)/2.326 = 0.7196; mean = 150ms·e^(σ²/2) = 194.3ms.
	if got := l.Mean(); !near(got, 194300*time.Microsecond) {
		t.Errorf("mean %v, want 194.3ms", got)
	}
	f := Fixed(200 * ms)
	if f.Mean() != 200*ms || f.draw() != 200*ms {
		t.Errorf("fixed: mean %v draw %v, want 200ms", f.Mean(), f.draw())
	}
}

// TestInFlightPeak holds sends open with a long latency, counts them, and
// lets them go.
func TestInFlightPeak(t *testing.T) {
	sb, err := New(Config{Latency: Fixed(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, n)
	for i := range n {
		go func() {
			_, err := sb.Send(ctx, channel.Message{IntentID: string(rune('a' + i)), Channel: intent.SMS, To: "+8613800138000"})
			done <- err
		}()
	}
	for wait := time.Now().Add(10 * time.Second); sb.InFlightPeak() < n && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	cancel()
	for range n {
		var ce *channel.Error
		if err := <-done; !errors.As(err, &ce) || ce.Kind != channel.Unknown {
			t.Errorf("held send: %v, want Unknown when its context ends", err)
		}
	}
	if p := sb.InFlightPeak(); p != n {
		t.Errorf("in-flight peak %d, want %d", p, n)
	}
	fast, _ := New(Config{})
	for i := range 3 {
		if _, err := fast.Send(t.Context(), channel.Message{IntentID: string(rune('a' + i)), Channel: intent.SMS, To: "+8613800138000"}); err != nil {
			t.Fatal(err)
		}
	}
	if p := fast.InFlightPeak(); p != 1 {
		t.Errorf("sequential sends: peak %d, want 1", p)
	}
}
