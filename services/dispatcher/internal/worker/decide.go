package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// Decide takes one message to a recorded decision and returns the records to
// publish before its offset is committed (status events, a DLQ record). An
// error means nothing final happened and the message must be decided again:
// Redis or a dependency failed, or another worker holds the intent.
func (w *Worker) Decide(ctx context.Context, m kafka.Message) ([]kafka.Message, error) {
	w.Metrics.Consumed.Inc()
	in, err := intent.Decode(m.Value)
	if err == nil {
		err = in.Validate(w.Templates)
	}
	if err != nil {
		return w.reject(ctx, m, in, err)
	}
	now := w.Now()
	if in.ExpiresAt != nil && !now.Before(*in.ExpiresAt) {
		return w.endWithout(ctx, in, status.Suppressed, status.ReasonExpired, "expires_at has passed")
	}
	return w.send(ctx, in)
}

// reject sends m to the DLQ with its reason and, when the intent's id is
// usable, records it rejected so its status explains why.
func (w *Worker) reject(ctx context.Context, m kafka.Message, in intent.Intent, cause error) ([]kafka.Message, error) {
	reason, code := cause.Error(), "invalid"
	var ie *intent.Error
	if errors.As(cause, &ie) && len(ie.Fields) > 0 {
		code = ie.Fields[0].Code
	}
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: kafkaio.HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: kafkaio.HeaderCode, Value: []byte(code)},
		kafka.Header{Key: kafkaio.HeaderRejectedAt, Value: []byte(w.Now().UTC().Format(time.RFC3339Nano))},
	)
	headers = append(headers, kafkaio.SourceHeaders(m)...)
	out := []kafka.Message{{Topic: w.Topics.DLQ, Key: m.Key, Value: m.Value, Headers: headers}}
	w.Metrics.DLQ.WithLabelValues(code).Inc()
	w.Log.Warn("intent rejected to the DLQ", "partition", m.Partition, "offset", m.Offset, "reason", reason)

	if !usableIDs(in, ie) {
		w.Metrics.Decisions.WithLabelValues(string(status.Rejected), status.ReasonInvalid).Inc()
		return out, nil
	}
	recs, err := w.endWithout(ctx, in, status.Rejected, status.ReasonInvalid, reason)
	if err != nil {
		return nil, err
	}
	return append(out, recs...), nil
}

// usableIDs reports whether in's id and debtor id passed validation, so a
// record can be kept under them.
func usableIDs(in intent.Intent, ie *intent.Error) bool {
	if ie == nil || in.ID == "" || in.DebtorID == "" {
		return false
	}
	for _, f := range ie.Fields {
		if f.Field == "" || f.Field == "id" || f.Field == "debtor_id" {
			return false
		}
	}
	return true
}

// endWithout records an end state decided without contacting anyone.
func (w *Worker) endWithout(ctx context.Context, in intent.Intent, st status.State, reason, detail string) ([]kafka.Message, error) {
	now := w.Now().UTC()
	e := status.Entry{At: now, State: st, Reason: reason, Detail: detail, Worker: w.cfg.Owner}
	res, err := w.Store.Claim(ctx, store.ClaimRequest{
		ID: in.ID, DebtorID: in.DebtorID, Owner: w.cfg.Owner, Now: now,
		Target: st, Reason: reason, Template: in.Template, Entry: e,
	})
	if err != nil {
		return nil, err
	}
	switch res.Outcome {
	case store.Claimed:
		e.Seq = res.Seq
		w.Metrics.Decisions.WithLabelValues(string(st), reason).Inc()
		return w.events(in.ID, in.DebtorID, e)
	case store.Busy:
		return nil, &busyError{id: in.ID, owner: res.Owner, until: res.LeaseUntil}
	default: // Duplicate (Stale cannot happen for an end state)
		return w.duplicate(ctx, in)
	}
}

// send claims the intent, sends it on its first channel and records the
// outcome.
func (w *Worker) send(ctx context.Context, in intent.Intent) ([]kafka.Message, error) {
	ch := in.Channels[0]
	sender, ok := w.Senders[ch]
	if !ok {
		return w.endWithout(ctx, in, status.Failed, "no_provider", fmt.Sprintf("no provider configured for %s", ch))
	}
	now := w.Now().UTC()
	to := intent.MaskAddress(ch, in.To.For(ch))
	claimEntry := status.Entry{At: now, State: status.Sending, Channel: string(ch), To: to, Worker: w.cfg.Owner}
	res, err := w.Store.Claim(ctx, store.ClaimRequest{
		ID: in.ID, DebtorID: in.DebtorID, Owner: w.cfg.Owner, Now: now,
		LeaseUntil: now.Add(w.cfg.lease()),
		Target:     status.Sending, Channel: string(ch), Template: in.Template, Entry: claimEntry,
	})
	if err != nil {
		return nil, err
	}
	var recs []kafka.Message
	switch res.Outcome {
	case store.Claimed:
		claimEntry.Seq = res.Seq
		recs, _ = w.events(in.ID, in.DebtorID, claimEntry)
	case store.Duplicate:
		return w.duplicate(ctx, in)
	case store.Busy:
		return nil, &busyError{id: in.ID, owner: res.Owner, until: res.LeaseUntil}
	case store.Stale:
		// The previous holder died while sending: the provider may have it.
		// Its transitions so far may not have been published.
		w.Metrics.Recovered.Inc()
		rec, err := w.Store.GetFor(ctx, in.DebtorID, in.ID)
		if err != nil {
			return nil, err
		}
		for _, e := range rec.Timeline {
			m, err := w.eventMessage(status.TransitionEvent(rec.ID, rec.DebtorID, e))
			if err != nil {
				return nil, err
			}
			recs = append(recs, m)
		}
		if !sender.Idempotent() {
			more, err := w.finish(ctx, in, ch, status.SentUnconfirmed, "worker_lost_during_send",
				status.Entry{Channel: string(ch), To: to, Detail: "the worker sending it stopped; the provider may have it"})
			return append(recs, more...), err
		}
		// The provider drops a repeat of this id, so sending again resolves it.
	}

	msg, err := w.render(in, ch)
	if err != nil {
		more, ferr := w.finish(ctx, in, ch, status.Failed, "render_error", status.Entry{Channel: string(ch), To: to, Detail: err.Error()})
		return append(recs, more...), ferr
	}
	rcpt, serr := w.sendRetrying(ctx, sender, msg)
	st, reason, e := outcome(rcpt, serr)
	e.Channel, e.To = string(ch), to
	more, err := w.finish(ctx, in, ch, st, reason, e)
	if err != nil {
		return nil, err
	}
	return append(recs, more...), nil
}

// sendRetrying calls the provider, repeating a retryable failure (and, for
// an idempotent provider, an unknown outcome) a few times with backoff.
func (w *Worker) sendRetrying(ctx context.Context, s Sender, m channel.Message) (channel.Receipt, error) {
	delay := w.cfg.RetryDelay
	for attempt := 0; ; attempt++ {
		sctx, cancel := context.WithTimeout(ctx, w.cfg.SendTimeout)
		start := time.Now()
		r, err := s.Send(sctx, m)
		cancel()
		w.Metrics.SendSeconds.WithLabelValues(string(m.Channel)).Observe(time.Since(start).Seconds())
		if err == nil {
			return r, nil
		}
		k := channel.KindOf(err)
		if attempt >= w.cfg.SendRetries || ctx.Err() != nil || (k != channel.Retryable && !(k == channel.Unknown && s.Idempotent())) {
			return r, err
		}
		var ce *channel.Error
		wait := delay
		if errors.As(err, &ce) && ce.RetryAfter > wait {
			wait = ce.RetryAfter
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return r, err
		}
		delay *= 2
	}
}

// outcome turns a provider's answer into the intent's next state: the one
// place where a send error becomes a decision.
func outcome(r channel.Receipt, err error) (status.State, string, status.Entry) {
	if err == nil {
		return status.Sent, "", status.Entry{Provider: r.Provider, ProviderID: r.ProviderID}
	}
	var code string
	var ce *channel.Error
	if errors.As(err, &ce) {
		code = ce.Code
	}
	e := status.Entry{Provider: r.Provider, ErrorCode: code, Detail: err.Error()}
	switch channel.KindOf(err) {
	case channel.Permanent:
		return status.Failed, "permanent", e
	case channel.Retryable:
		return status.Failed, "retries_exhausted", e
	default:
		return status.SentUnconfirmed, "unknown_outcome", e
	}
}

func (w *Worker) finish(ctx context.Context, in intent.Intent, ch intent.Channel, st status.State, reason string, e status.Entry) ([]kafka.Message, error) {
	now := w.Now().UTC()
	e.At, e.State, e.Reason, e.Worker = now, st, reason, w.cfg.Owner
	seq, err := w.Store.Finish(ctx, store.FinishRequest{
		ID: in.ID, DebtorID: in.DebtorID, Owner: w.cfg.Owner, Now: now,
		State: st, Reason: reason, Channel: string(ch), Entry: e,
	})
	if errors.Is(err, store.ErrLeaseLost) {
		// We overran the lease and another worker took the intent over; its
		// decision stands.
		w.Log.Warn("lease lost while sending; the other worker's decision stands", "intent_id", in.ID)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e.Seq = seq
	w.Metrics.Decisions.WithLabelValues(string(st), reason).Inc()
	if st == status.Sent {
		w.Metrics.Sends.WithLabelValues(string(ch), e.Provider).Inc()
	}
	w.Log.Debug("intent decided", "intent_id", in.ID, "debtor_id", in.DebtorID, "state", st, "reason", reason, "channel", ch)
	return w.events(in.ID, in.DebtorID, e)
}

// duplicate handles an intent id that was decided already: the record stays
// as it is; its transitions are published again (a crash may have stopped
// the first publication; consumers drop repeats by id and seq) together with
// a duplicate event.
func (w *Worker) duplicate(ctx context.Context, in intent.Intent) ([]kafka.Message, error) {
	rec, err := w.Store.GetFor(ctx, in.DebtorID, in.ID)
	if err != nil {
		return nil, err
	}
	w.Metrics.Decisions.WithLabelValues(string(status.Suppressed), status.ReasonDuplicate).Inc()
	var out []kafka.Message
	for _, e := range rec.Timeline {
		m, err := w.eventMessage(status.TransitionEvent(rec.ID, rec.DebtorID, e))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	d := status.Event{
		Kind: status.KindDuplicate, ID: in.ID, DebtorID: in.DebtorID, State: status.Suppressed,
		Reason: status.ReasonDuplicate, At: w.Now().UTC(), Detail: "already " + string(rec.State),
	}
	m, err := w.eventMessage(d)
	if err != nil {
		return nil, err
	}
	return append(out, m), nil
}

func (w *Worker) events(id, debtorID string, entries ...status.Entry) ([]kafka.Message, error) {
	out := make([]kafka.Message, 0, len(entries))
	for _, e := range entries {
		m, err := w.eventMessage(status.TransitionEvent(id, debtorID, e))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (w *Worker) eventMessage(ev status.Event) (kafka.Message, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return kafka.Message{}, err
	}
	return kafka.Message{Topic: w.Topics.Status, Key: []byte(ev.ID), Value: b}, nil
}

func (w *Worker) render(in intent.Intent, ch intent.Channel) (channel.Message, error) {
	c, err := w.Templates.Render(in.Template, in.Locale, ch, in.Params)
	if err != nil {
		return channel.Message{}, err
	}
	m := channel.Message{
		IntentID: in.ID, DebtorID: in.DebtorID, Channel: ch, To: in.To.For(ch),
		Locale: in.Locale, Template: in.Template,
		Subject: c.Subject, Text: c.Text, HTML: c.HTML, Title: c.Title,
	}
	for _, f := range c.Fields {
		m.Fields = append(m.Fields, channel.Field{Key: f.Key, Value: f.Value})
	}
	return m, nil
}
