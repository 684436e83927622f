package sandbox

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// z99 is the standard normal's 99th percentile.
const z99 = 2.3263478740408408

// Latency is how long each send takes: a fixed time (P50 == P99), or a
// log-normal distribution given by its median and 99th percentile, the
// shape real providers' round trips take (most quick, a long tail).
type Latency struct {
	P50, P99 time.Duration
}

// Fixed is a latency that is always d.
func Fixed(d time.Duration) Latency { return Latency{P50: d, P99: d} }

// ParseLatency reads a duration ("200ms", "0") or "lognormal:P50:P99"
// ("lognormal:150ms:800ms").
func ParseLatency(s string) (Latency, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "lognormal:"); ok {
		p50s, p99s, ok := strings.Cut(rest, ":")
		if !ok {
			return Latency{}, fmt.Errorf("latency %q: want lognormal:P50:P99, e.g. lognormal:150ms:800ms", s)
		}
		p50, err1 := time.ParseDuration(p50s)
		p99, err2 := time.ParseDuration(p99s)
		switch {
		case err1 != nil || err2 != nil:
			return Latency{}, fmt.Errorf("latency %q: P50 and P99 must be durations like 150ms", s)
		case p50 <= 0:
			return Latency{}, fmt.Errorf("latency %q: P50 must be positive", s)
		case p99 < p50:
			return Latency{}, fmt.Errorf("latency %q: P99 must not be below P50", s)
		}
		return Latency{P50: p50, P99: p99}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return Latency{}, fmt.Errorf("latency %q: want a duration like 200ms, or lognormal:P50:P99", s)
	}
	if d < 0 {
		return Latency{}, fmt.Errorf("latency %q: must not be negative", s)
	}
	return Fixed(d), nil
}

// String is the form ParseLatency reads.
func (l Latency) String() string {
	if l.P50 == l.P99 {
		return l.P50.String()
	}
	return "lognormal:" + l.P50.String() + ":" + l.P99.String()
}

// sigma is the log-normal's shape: ln(P99/P50) / z99.
func (l Latency) sigma() float64 {
	if l.P50 <= 0 || l.P99 <= l.P50 {
		return 0
	}
	return math.Log(float64(l.P99)/float64(l.P50)) / z99
}

// Mean is the expected latency of one send: P50·e^(σ²/2).
func (l Latency) Mean() time.Duration {
	s := l.sigma()
	return time.Duration(float64(l.P50) * math.Exp(s*s/2))
}

// at is the latency at z standard deviations of the underlying normal:
// at(0) is P50, at(z99) is P99.
func (l Latency) at(z float64) time.Duration {
	return time.Duration(float64(l.P50) * math.Exp(l.sigma()*z))
}

// draw is one send's latency.
func (l Latency) draw() time.Duration {
	if l.P50 == l.P99 {
		return l.P50
	}
	return l.at(rand.NormFloat64())
}
