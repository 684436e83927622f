package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
)

// Reader reads the control topic in a consumer group.
type Reader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	CommitMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Publisher writes records and returns once they are acked.
type Publisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Markers remember applied command ids (the Redis store).
type Markers interface {
	CommandApplied(ctx context.Context, commandID string) (string, error)
	MarkCommand(ctx context.Context, commandID, note string) error
}

// Outcomes of a command, the label of dispatcher_control_commands_total.
const (
	OutcomeApplied  = "applied"   // its effect is recorded
	OutcomeReplayed = "replayed"  // its command id was applied before: nothing changed
	OutcomeTooLate  = "too_late"  // cancel: the intent was sent or ended otherwise
	OutcomeInFlight = "in_flight" // cancel: a send still in flight after the wait
	OutcomeExpired  = "expired"   // hold: its until had passed when it was read
	OutcomeRejected = "rejected"  // to the DLQ with its reason and code
)

// Metrics count the control topic's commands.
type Metrics struct {
	Commands *prometheus.CounterVec // type, outcome
	Rejected *prometheus.CounterVec // code
}

// NewMetrics registers the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_control_commands_total",
			Help: "Commands read from reminders.control, by type (cancel, hold, release, unknown) and outcome (applied, replayed, too_late, in_flight, expired, rejected).",
		}, []string{"type", "outcome"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dispatcher_control_rejected_total",
			Help: "Commands of reminders.control sent to the DLQ, by error code.",
		}, []string{"code"}),
	}
	if reg != nil {
		reg.MustRegister(m.Commands, m.Rejected)
	}
	return m
}

// Consumer applies the commands of reminders.control, one at a time in the
// order of each partition (a debtor's commands share one: key = debtor_id).
// A command's offset is committed only after its effect is recorded in
// Redis and its records (the hold, the status events of what it canceled,
// or its DLQ record) are on Kafka, and its command id is marked applied. A
// bad command goes to the DLQ and the next is read; a failure of Redis or
// Kafka is retried, never skipped.
type Consumer struct {
	Reader    Reader
	Publisher Publisher
	Applier   *Applier
	Markers   Markers
	Topics    kafkaio.Topics
	Metrics   *Metrics
	Log       *slog.Logger
	Now       func() time.Time
	// InFlightWait is how long a cancel waits for a send in flight to end
	// (sent: too late; failed and to be retried: canceled). Default 30s.
	InFlightWait time.Duration
	// Sleep waits d or until ctx ends (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c *Consumer) defaults() {
	if c.Topics == (kafkaio.Topics{}) {
		c.Topics = kafkaio.DefaultTopics
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = c.Applier.Now
	}
	if c.InFlightWait == 0 {
		c.InFlightWait = 30 * time.Second
	}
	if c.Sleep == nil {
		c.Sleep = func(ctx context.Context, d time.Duration) error {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
				return nil
			}
		}
	}
}

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	c.defaults()
	backoff := func(try int) time.Duration { return min(100*time.Millisecond<<min(try, 6), 5*time.Second) }
	for {
		m, err := c.Reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.Log.Warn("control topic: fetch failed", "err", err)
			if c.Sleep(ctx, time.Second) != nil {
				return nil
			}
			continue
		}
		for try := 0; ; try++ {
			err := c.Handle(ctx, m)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			c.Log.Warn("control command not applied yet; retrying", "partition", m.Partition, "offset", m.Offset, "err", err)
			if c.Sleep(ctx, backoff(try)) != nil {
				return nil
			}
		}
		for try := 0; ; try++ {
			err := c.Reader.CommitMessages(ctx, m)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			c.Log.Warn("control topic: commit failed; retrying", "partition", m.Partition, "offset", m.Offset, "err", err)
			if c.Sleep(ctx, backoff(try)) != nil {
				return nil
			}
		}
	}
}

// Handle applies one command and publishes what it must: when it returns
// nil the offset may be committed. An error means nothing was skipped and
// the command must be handled again (its effects are idempotent).
func (c *Consumer) Handle(ctx context.Context, m kafka.Message) error {
	c.defaults()
	cmd, err := Decode(m.Value)
	if err == nil && string(m.Key) != cmd.DebtorID {
		err = invalid("", CodeKeyMismatch, "the record's key must be its debtor_id, so a debtor's commands stay in order on one partition")
	}
	if err != nil {
		return c.reject(ctx, m, cmd.Type, err.(*Error))
	}
	if note, err := c.Markers.CommandApplied(ctx, cmd.CommandID); err != nil {
		return err
	} else if note != "" {
		c.Metrics.Commands.WithLabelValues(cmd.Type, OutcomeReplayed).Inc()
		c.Log.Info("control command already applied", "command_id", cmd.CommandID, "type", cmd.Type, "outcome", note)
		return nil
	}
	outcome, recs, note, err := c.apply(ctx, cmd)
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			return c.reject(ctx, m, cmd.Type, ce)
		}
		return err
	}
	if err := c.publish(ctx, recs); err != nil {
		return err
	}
	if err := c.Markers.MarkCommand(ctx, cmd.CommandID, note); err != nil {
		return err
	}
	c.Metrics.Commands.WithLabelValues(cmd.Type, outcome).Inc()
	c.Log.Info("control command", "command_id", cmd.CommandID, "type", cmd.Type, "outcome", outcome, "detail", note)
	return nil
}

// apply gives the command's outcome, the records to publish, and the note
// its marker keeps. An *Error is a command that cannot apply: the DLQ.
func (c *Consumer) apply(ctx context.Context, cmd Command) (string, []kafka.Message, string, error) {
	a := c.Applier
	switch cmd.Type {
	case TypeCancel:
		req := Cancel{IntentID: cmd.IntentID, DebtorID: cmd.DebtorID, Reason: cmd.Reason, Note: cmd.Note, Actor: cmd.ActorOf(), Via: ViaKafka}
		var waited time.Duration
		for {
			res, err := a.Cancel(ctx, req)
			if err != nil {
				return "", nil, "", err
			}
			switch res.Outcome {
			case Canceled, AlreadyCanceled:
				return OutcomeApplied, res.Records, "canceled " + cmd.IntentID, nil
			case TooLate:
				return OutcomeTooLate, nil, "too late: " + cmd.IntentID + " is " + string(res.State), nil
			case OtherDebtor:
				return "", nil, "", invalid("intent_id", CodeIDConflict, "the intent belongs to another debtor_id")
			case InFlight:
				if waited >= c.InFlightWait {
					return OutcomeInFlight, nil, "in flight: " + cmd.IntentID + " was being sent", nil
				}
				// The send may yet fail and be retried: then the cancel wins.
				const step = 250 * time.Millisecond
				if err := c.Sleep(ctx, step); err != nil {
					return "", nil, "", err
				}
				waited += step
			default: // UnknownIntent cannot happen: the debtor is given
				return "", nil, "", invalid("intent_id", "unknown", "unknown intent")
			}
		}
	case TypeHold:
		hid := cmd.HoldIDOf()
		if cmd.Until != nil && !cmd.Until.After(c.Now()) {
			return OutcomeExpired, nil, "hold " + hid + " not placed: until had passed", nil
		}
		res, err := a.Hold(ctx, Hold{ID: hid, DebtorID: cmd.DebtorID, DebtID: cmd.DebtID, Reason: cmd.Reason, Until: cmd.Until,
			Actor: cmd.ActorOf(), Via: ViaKafka})
		if err != nil {
			return "", nil, "", err
		}
		return OutcomeApplied, res.Records, "hold " + hid + " placed, " + strconv.Itoa(res.Canceled) + " canceled", nil
	case TypeRelease:
		_, err := a.Release(ctx, cmd.DebtorID, cmd.HoldID, cmd.ActorOf())
		if errors.Is(err, ErrNoHold) {
			return "", nil, "", invalid("hold_id", CodeUnknownHold, "the debtor has no hold of this id")
		}
		if err != nil {
			return "", nil, "", err
		}
		return OutcomeApplied, nil, "hold " + cmd.HoldID + " released", nil
	}
	return "", nil, "", invalid("type", "unknown", "must be cancel, hold or release")
}

// publish writes recs, retrying only the write (the effects are in Redis
// already) until it succeeds or ctx ends.
func (c *Consumer) publish(ctx context.Context, recs []kafka.Message) error {
	for try := 0; len(recs) > 0; try++ {
		err := c.Publisher.WriteMessages(ctx, recs...)
		if err == nil {
			return nil
		}
		c.Log.Warn("control command applied in Redis, its records not yet on Kafka; retrying", "err", err)
		if err := c.Sleep(ctx, min(100*time.Millisecond<<min(try, 6), 5*time.Second)); err != nil {
			return err
		}
	}
	return nil
}

// reject dead-letters m with its reason and code, as the worker does a bad
// intent: the original bytes (cut at dlqKeep) and the headers saying why,
// when and where from.
func (c *Consumer) reject(ctx context.Context, m kafka.Message, typ string, e *Error) error {
	reason, code := e.Error(), e.Code()
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: kafkaio.HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: kafkaio.HeaderCode, Value: []byte(code)},
		kafka.Header{Key: kafkaio.HeaderRejectedAt, Value: []byte(c.Now().UTC().Format(time.RFC3339Nano))},
	)
	headers = append(headers, kafkaio.SourceHeaders(m)...)
	value := m.Value
	if len(value) > dlqKeep {
		sum := sha256.Sum256(value)
		headers = append(headers,
			kafka.Header{Key: kafkaio.HeaderTruncated, Value: []byte(strconv.Itoa(len(value)))},
			kafka.Header{Key: kafkaio.HeaderSHA256, Value: []byte(hex.EncodeToString(sum[:]))})
		value = value[:dlqKeep]
	}
	if err := c.publish(ctx, []kafka.Message{{Topic: c.Topics.DLQ, Key: m.Key, Value: value, Headers: headers}}); err != nil {
		return err
	}
	switch typ {
	case TypeCancel, TypeHold, TypeRelease:
	default:
		typ = "unknown"
	}
	c.Metrics.Commands.WithLabelValues(typ, OutcomeRejected).Inc()
	c.Metrics.Rejected.WithLabelValues(code).Inc()
	c.Log.Warn("control command rejected to the DLQ", "partition", m.Partition, "offset", m.Offset, "code", code, "reason", reason)
	return nil
}

// dlqKeep is the most of a rejected value the DLQ keeps.
const dlqKeep = 64 << 10
