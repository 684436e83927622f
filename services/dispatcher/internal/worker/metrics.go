package worker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the worker's Prometheus series.
type Metrics struct {
	Consumed    prometheus.Counter
	Committed   prometheus.Counter
	Decisions   *prometheus.CounterVec // by state and reason
	DLQ         *prometheus.CounterVec // by error code
	Sends       *prometheus.CounterVec // by channel and provider
	SendSeconds *prometheus.HistogramVec
	InfraErrors prometheus.Counter
	Recovered   prometheus.Counter
	Rebuilds    prometheus.Counter
	InFlight    prometheus.Gauge // provider calls admitted and not yet answered
	Queued      prometheus.Gauge // intents in lanes, not yet committed
}

// NewMetrics makes the series and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_intents_consumed_total", Help: "Intent messages read from Kafka (redeliveries included).",
		}),
		Committed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_intents_committed_total", Help: "Intent messages whose offsets were committed after their decision was recorded.",
		}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_decisions_total", Help: "Recorded decisions by resulting state and reason.",
		}, []string{"state", "reason"}),
		DLQ: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_dlq_total", Help: "Messages sent to the DLQ, by the first validation error code.",
		}, []string{"code"}),
		Sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_sends_total", Help: "Messages accepted by a provider, by channel and provider.",
		}, []string{"channel", "provider"}),
		SendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dispatcher_provider_call_seconds", Help: "Duration of provider calls, by channel, provider and result (ok, permanent, retryable, unknown_outcome).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"channel", "provider", "result"}),
		InfraErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_infrastructure_errors_total", Help: "Redis or Kafka failures that made the worker retry.",
		}),
		Recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_sends_recovered_total", Help: "Sends taken over from a worker that stopped mid-send.",
		}),
		Rebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dispatcher_state_rebuilds_total", Help: "Times this worker found Redis had lost its state and rebuilt it from Kafka.",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_sends_in_flight", Help: "Intents holding an in-flight slot: admitted for a provider call and not yet answered (at most DISPATCHER_MAX_IN_FLIGHT).",
		}),
		Queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dispatcher_intents_in_progress", Help: "Intents read and not yet committed, in every lane (at most DISPATCHER_LANE_QUEUE per partition).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Consumed, m.Committed, m.Decisions, m.DLQ, m.Sends, m.SendSeconds, m.InfraErrors, m.Recovered, m.Rebuilds, m.InFlight, m.Queued)
	}
	return m
}
