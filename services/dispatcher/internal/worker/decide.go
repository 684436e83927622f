package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/optout"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/opsdata"
)

// neverAllowed reports whether no candidate channel of in can ever be
// allowed: the windows of its zones never overlap. The entry it returns
// ends the intent suppressed/no_allowed_time, naming the zones and the rule.
func (w *Worker) neverAllowed(in intent.Intent, now time.Time) (status.Entry, bool) {
	p := w.Profile
	chans := in.Channels
	if len(chans) == 0 {
		return status.Entry{}, false
	}
	if !in.Fallback {
		chans = chans[:1]
	}
	zones := p.Zones(in)
	var rule *policy.Rule
	for _, ch := range chans {
		if p.AllowedNow(ch, zones, now) {
			return status.Entry{}, false // the common case, without Window's search
		}
		d := p.Window(ch, zones, now)
		if d.Allowed || !d.Next.IsZero() || !p.NeverAllowed(ch, zones, now) {
			return status.Entry{}, false
		}
		if rule == nil {
			rule = d.Rule
		}
	}
	names := make([]string, len(zones))
	for i, z := range zones {
		names[i] = z.String()
	}
	e := status.Entry{State: status.Suppressed, Reason: status.ReasonNoAllowedTime,
		Detail: "the windows of " + strings.Join(names, ", ") + " never overlap",
		Inputs: &status.Inputs{Zones: names, LocalTimes: p.Window(chans[0], zones, now).Inputs}}
	if rule != nil {
		e.Rule = rule.ID
	}
	return e, true
}

// reject sends m to the DLQ with its reason and, when the intent's id is
// usable, records it rejected so its status explains why.
func (w *Worker) reject(ctx context.Context, m kafka.Message, in intent.Intent, cause error) ([]kafka.Message, error) {
	reason, code := cause.Error(), "invalid"
	var ie *intent.Error
	if errors.As(cause, &ie) && len(ie.Fields) > 0 {
		code = ie.Fields[0].Code
	}
	out := w.dlq(m, reason, code)
	if !usableIDs(in, ie) {
		w.count(status.Rejected, status.ReasonInvalid, "")
		return out, nil
	}
	recs, err := w.endWithout(ctx, in, status.Rejected, status.ReasonInvalid, reason)
	if errors.Is(err, errIDConflict) {
		// The id is another debtor's: the DLQ record is all there is.
		w.count(status.Rejected, status.ReasonInvalid, "")
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	return append(out, recs...), nil
}

// errIDConflict: the intent's id is bound to another debtor.
var errIDConflict = errors.New("the intent id belongs to another debtor")

// CodeIDConflict is the DLQ code of an intent whose id another debtor's
// intent has.
const CodeIDConflict = "id_conflict"

// conflict dead-letters an intent whose id is bound to another debtor:
// never decided, never recorded, never shown in place of the original.
func (w *Worker) conflict(m kafka.Message, in intent.Intent) []kafka.Message {
	w.count(status.Rejected, CodeIDConflict, "")
	return w.dlq(m, "id: intent "+in.ID+" belongs to another debtor_id: an intent id binds to one debtor forever", CodeIDConflict)
}

// dlq is m's record on the DLQ with its reason and code.
func (w *Worker) dlq(m kafka.Message, reason, code string) []kafka.Message {
	headers := append([]kafka.Header{}, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: kafkaio.HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: kafkaio.HeaderCode, Value: []byte(code)},
		kafka.Header{Key: kafkaio.HeaderRejectedAt, Value: []byte(w.Now().UTC().Format(time.RFC3339Nano))},
	)
	headers = append(headers, kafkaio.SourceHeaders(m)...)
	value := m.Value
	if len(value) > dlqKeep {
		// Too large to dead-letter whole (the writer's and the broker's
		// limits): keep its start and say what it was.
		sum := sha256.Sum256(value)
		headers = append(headers,
			kafka.Header{Key: kafkaio.HeaderTruncated, Value: []byte(strconv.Itoa(len(value)))},
			kafka.Header{Key: kafkaio.HeaderSHA256, Value: []byte(hex.EncodeToString(sum[:]))})
		value = value[:dlqKeep]
	}
	w.Metrics.DLQ.WithLabelValues(code).Inc()
	w.Ops.Rejected(code, reason, w.Now().UTC())
	w.Log.Warn("intent rejected to the DLQ", "partition", m.Partition, "offset", m.Offset, "reason", reason)
	return []kafka.Message{{Topic: w.Topics.DLQ, Key: m.Key, Value: value, Headers: headers}}
}

// dlqKeep is the most of a rejected value the DLQ keeps: well under the
// writer's 1 MiB batch limit and Kafka's default message size.
const dlqKeep = 256 << 10

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
	return w.endEntry(ctx, in, status.Entry{State: st, Reason: reason, Detail: detail})
}

// endEntry records e's end state (and its rule, source and inputs) decided
// without contacting anyone.
func (w *Worker) endEntry(ctx context.Context, in intent.Intent, e status.Entry) ([]kafka.Message, error) {
	now := w.Now().UTC()
	st, reason := e.State, e.Reason
	e.At, e.Worker = now, w.cfg.Owner
	if e.Rule != "" {
		// A decision by a rule names the profile's text that made it.
		e.Profile, e.Version, e.Source = w.Profile.Name, w.Profile.Version, w.Profile.Source(e.Rule)
	}
	res, err := w.Store.Claim(ctx, store.ClaimRequest{
		ID: in.ID, DebtorID: in.DebtorID, Owner: w.attempt(), Now: now,
		Target: st, Reason: reason, Template: in.Template, Entry: e,
	})
	if err != nil {
		return nil, err
	}
	switch res.Outcome {
	case store.Claimed:
		e.Seq = res.Seq
		w.count(st, reason, "")
		return w.events(in.ID, in.DebtorID, e)
	case store.Busy:
		return nil, &busyError{id: in.ID, owner: res.Owner, until: res.LeaseUntil}
	case store.Conflict:
		return nil, errIDConflict
	default: // Duplicate (Stale cannot happen for an end state)
		return w.duplicate(ctx, in)
	}
}

// plan is a send's outcome waiting to be recorded: the finish request and
// what to publish once it is.
type plan struct {
	ch       intent.Channel
	rule     string // a deferral: its rule ("" a retry)
	req      store.FinishRequest
	recs     []kafka.Message // published before the outcome's own events
	retries  int             // a retry deferral: the retries so far
	claimSeq int64           // the seq of the claim this outcome follows
}

// busyPlan records a claimed intent as deferred when the channel the gate
// chose (a fallback) had no free slot or rate within AdmitWait: nothing
// reached the provider, so the contact is uncounted, and the breaker never
// hears of it.
func (w *Worker) busyPlan(j *job, ch intent.Channel) *plan {
	now := w.Now().UTC()
	until := now.Add(w.cfg.AdmitWait)
	e := status.Entry{At: now, State: status.Deferred, Reason: status.ReasonProviderBusy, Worker: w.cfg.Owner,
		Channel: string(ch), To: intent.MaskAddress(ch, j.in.To.For(ch)), Until: &until,
		Rule:   "provider-busy:" + providerName(w.Senders[ch]),
		Detail: "the provider had no free slot or rate within " + w.cfg.AdmitWait.String()}
	return &plan{ch: ch, recs: j.recs, claimSeq: j.plan.claimSeq, retries: retriesOf(j.m), rule: e.Rule,
		req: store.FinishRequest{ID: j.in.ID, DebtorID: j.in.DebtorID, Owner: j.token, Now: now,
			State: status.Deferred, Reason: status.ReasonProviderBusy, Channel: string(ch), Entry: e,
			Release: w.countIn(j.in, ch)}}
}

// afterGate turns the gate's answer into records. It returns a plan (with
// only its channel set) when the intent must now be sent. own says the
// caller may itself hold a lease from an earlier try of the same gate call
// (a batch retried after a Redis error): its own claim is no one else's.
func (w *Worker) afterGate(ctx context.Context, j *job, res store.GateResult, own bool) ([]kafka.Message, *plan, error) {
	in, m := j.in, j.m
	// The audit trail carries the law as the deciding profile states it:
	// the deciding rule's source, and for a send every rule that could have
	// blocked it.
	if s := w.Profile.Source(res.Entry.Rule); s != "" {
		res.Entry.Source = s
	}
	if res.Outcome == store.Claimed && res.Entry.Inputs != nil {
		res.Entry.Sources = policy.SendSources(res.Entry.Inputs.Checks, res.Channel, j.in.ExpiresAt != nil, w.Profile.Source)
	}
	res.Entry.Inputs.Explain()
	reinjected := kafkaio.Header(m, kafkaio.HeaderReinjected) != ""
	var recs []kafka.Message
	var err error
	switch res.Outcome {
	case store.Claimed:
		recs, _ = w.events(in.ID, in.DebtorID, res.Entry)
	case store.Deferred:
		w.count(status.Deferred, res.Entry.Reason, res.Channel)
		recs, err = w.events(in.ID, in.DebtorID, res.Entry)
		if err != nil {
			return nil, nil, err
		}
		d, err := w.deferral(m, in, res.Seq, res.Rule, res.Until, retriesOf(m))
		if err != nil {
			return nil, nil, err
		}
		return append(recs, d), nil, nil
	case store.Canceled:
		// A hold on the debtor or the debt, without an end.
		w.count(status.Canceled, res.Rule, "")
		recs, err = w.events(in.ID, in.DebtorID, res.Entry)
		return w.settled(recs, in, reinjected), nil, err
	case store.Suppressed:
		w.count(status.Suppressed, res.Rule, res.Channel)
		recs, err = w.events(in.ID, in.DebtorID, res.Entry)
		return w.settled(recs, in, reinjected), nil, err
	case store.Duplicate:
		recs, err = w.duplicate(ctx, in)
		return w.settled(recs, in, reinjected), nil, err
	case store.Busy:
		return nil, nil, &busyError{id: in.ID, owner: res.Holder, until: res.Until}
	case store.Conflict:
		return w.conflict(m, in), nil, nil
	case store.Stale:
		// Either our own claim from an earlier try of this very call (nothing
		// was sent), or the previous holder died while sending: the provider
		// may have it. Its transitions so far may not have been published.
		rec, err := w.Store.GetFor(ctx, in.DebtorID, in.ID)
		if err != nil {
			return nil, nil, err
		}
		if recs, err = w.events(rec.ID, rec.DebtorID, rec.Timeline...); err != nil {
			return nil, nil, err
		}
		ch := intent.Channel(res.Channel)
		if own && res.Holder == j.token {
			return recs, &plan{ch: ch, claimSeq: res.Seq}, nil
		}
		w.Metrics.Recovered.Inc()
		if s, ok := w.Senders[ch]; !ok || !s.Idempotent() {
			more, err := w.finish(ctx, j.token, in, ch, status.SentUnconfirmed, "worker_lost_during_send",
				status.Entry{Channel: string(ch), To: intent.MaskAddress(ch, in.To.For(ch)), Detail: "the worker sending it stopped; the provider may have it"})
			return w.settled(append(recs, more...), in, reinjected), nil, err
		}
		// The provider drops a repeat of this id, so sending again resolves it.
	default:
		return nil, nil, fmt.Errorf("gate: unexpected outcome %q", res.Outcome)
	}
	return recs, &plan{ch: intent.Channel(res.Channel), claimSeq: res.Seq}, nil
}

// attemptSend makes the provider call for a claimed intent and plans how to
// record its outcome. recs are the records to publish before it; reserved
// says the provider's rate was waited for already.
func (w *Worker) attemptSend(ctx context.Context, j *job, ch intent.Channel, recs []kafka.Message, reserved bool) *plan {
	in := j.in
	to := intent.MaskAddress(ch, in.To.For(ch))
	p := &plan{ch: ch, recs: recs}
	var o sendOutcome
	sender, ok := w.Senders[ch]
	msg, rerr := w.render(in, ch)
	switch {
	case !ok:
		o = sendOutcome{state: status.Failed, reason: "no_provider", release: true,
			entry: status.Entry{Detail: fmt.Sprintf("no provider configured for %s", ch)}}
	case rerr != nil:
		o = sendOutcome{state: status.Failed, reason: "render_error", release: true, entry: status.Entry{Detail: rerr.Error()}}
	default:
		rcpt, serr := w.call(ctx, sender, msg, reserved)
		o = w.outcome(in, ch, sender, retriesOf(j.m), rcpt, serr)
	}
	o.entry.Channel, o.entry.To = string(ch), to
	var release []store.Stream
	if o.release {
		// No provider took it: the contact did not happen and must not count.
		release = w.countIn(in, ch)
	}
	if o.optOut && w.OptOuts != nil {
		// The provider says the recipient opted out: it holds from now on
		// (recorded before the outcome, however long the store takes).
		oo := optout.OptOut{
			DebtorID: in.DebtorID, Channel: string(ch), Source: optout.SourceProvider,
			Reason: o.entry.Provider + " " + o.entry.ErrorCode, At: w.Now().UTC(),
		}
		w.retry(ctx, func() error { return w.OptOuts.Record(ctx, oo) })
	}
	now := w.Now().UTC()
	e := o.entry
	if e.At.IsZero() {
		e.At = now
	}
	e.State, e.Reason, e.Worker = o.state, o.reason, w.cfg.Owner
	p.req = store.FinishRequest{
		ID: in.ID, DebtorID: in.DebtorID, Owner: j.token, Now: now,
		State: o.state, Reason: o.reason, Channel: string(ch), Entry: e, Release: release,
		CountIn: w.countIn(in, ch), Retention: w.Profile.MaxLookback(), // counted again if Redis lost the claim
	}
	if o.state == status.Sent && (ch == intent.SMS || ch == intent.Voice) {
		p.req.Number = in.To.Phone // a reply from it must find this debtor
	}
	if o.state == status.Deferred {
		p.retries = o.retries
	}
	return p
}

// finishEach records outcomes one at a time, after a pipeline failed part
// way: an outcome already recorded by this worker is found on the record.
func (w *Worker) finishEach(ctx context.Context, rs []store.FinishRequest) ([]int64, error) {
	out := make([]int64, len(rs))
	for i, r := range rs {
		seq, err := w.Store.Finish(ctx, r)
		switch {
		case err == nil:
			out[i] = seq
		case errors.Is(err, store.ErrStateLost):
			out[i] = -1
		case errors.Is(err, store.ErrLeaseLost):
			rec, gerr := w.Store.GetFor(ctx, r.DebtorID, r.ID)
			if gerr != nil {
				return nil, gerr
			}
			if last := rec.Last(); last.Worker == w.cfg.Owner && last.State == r.State {
				out[i] = last.Seq // ours, from the failed pipeline
			}
		default:
			return nil, err
		}
	}
	return out, nil
}

// finished returns the records of a recorded outcome (seq 0: another worker
// took the intent over; its decision stands; -1: Redis lost the record, so
// the outcome is published with the seq it would have had, and the rebuild
// puts it back).
func (w *Worker) finished(j *job, p *plan, seq int64) ([]kafka.Message, error) {
	if seq == 0 {
		w.Log.Warn("lease lost while sending; the other worker's decision stands", "intent_id", j.in.ID)
		return p.recs, nil
	}
	if seq < 0 {
		seq = p.claimSeq + 1
	}
	in, e := j.in, p.req.Entry
	e.Seq = seq
	st, reason := p.req.State, p.req.Reason
	w.count(st, reason, string(p.ch))
	if st == status.Failed || st == status.SentUnconfirmed {
		w.Ops.Failed(opsdata.Failure{At: e.At, IntentID: in.ID, Channel: string(p.ch), State: string(st), Reason: reason, Code: e.ErrorCode})
	}
	if st == status.Sent {
		w.Metrics.Sends.WithLabelValues(string(p.ch), e.Provider).Inc()
	}
	w.Log.Debug("intent decided", "intent_id", in.ID, "debtor_id", in.DebtorID, "state", st, "reason", reason, "channel", p.ch)
	more, err := w.events(in.ID, in.DebtorID, e)
	if err != nil {
		return nil, err
	}
	recs := append(p.recs, more...)
	if st == status.Deferred {
		rule := "retry"
		if p.rule != "" {
			rule = p.rule
		}
		d, err := w.deferral(j.m, in, seq, rule, *e.Until, p.retries)
		if err != nil {
			return nil, err
		}
		return append(recs, d), nil
	}
	return w.settled(recs, in, kafkaio.Header(j.m, kafkaio.HeaderReinjected) != ""), nil
}

// count counts a decision in the metrics and for the ops page.
func (w *Worker) count(st status.State, reason, ch string) {
	w.Metrics.Decisions.WithLabelValues(string(st), reason).Inc()
	w.Ops.Decision(string(st), reason, ch)
}

// attempt returns a lease token unique to one attempt at one intent: two
// attempts of the same worker at the same id (two partitions carrying it)
// exclude each other like attempts of two workers.
func (w *Worker) attempt() string {
	return w.cfg.Owner + "/" + strconv.FormatUint(w.attempts.Add(1), 36)
}

// settled adds, for an intent the scheduler re-injected that reached an
// end state, the tombstone that removes it from reminders.deferred.
func (w *Worker) settled(recs []kafka.Message, in intent.Intent, reinjected bool) []kafka.Message {
	if !reinjected {
		return recs
	}
	return append(recs, kafka.Message{Topic: w.Topics.Deferred, Key: []byte(in.ID)})
}

// deferral is the record that keeps a deferred intent on reminders.deferred
// until the scheduler re-injects it.
func (w *Worker) deferral(m kafka.Message, in intent.Intent, seq int64, rule string, due time.Time, retries int) (kafka.Message, error) {
	b, err := json.Marshal(status.Deferral{
		ID: in.ID, DebtorID: in.DebtorID, Due: due.UTC(), Rule: rule, Seq: seq, Retries: retries,
		DeferredAt: w.Now().UTC(), Intent: m.Value,
	})
	if err != nil {
		return kafka.Message{}, err
	}
	return kafka.Message{Topic: w.Topics.Deferred, Key: []byte(in.ID), Value: b}, nil
}

// gateRequest asks the policy what each candidate channel allows now.
func (w *Worker) gateRequest(in intent.Intent, now time.Time, token string) (store.GateRequest, error) {
	p := w.Profile
	zones := p.Zones(in)
	chans := in.Channels
	if !in.Fallback {
		chans = chans[:1]
	}
	req := store.GateRequest{
		ID: in.ID, DebtorID: in.DebtorID, DebtID: in.DebtID, Owner: token, Template: in.Template,
		Now: now, LeaseUntil: now.Add(w.cfg.lease()), Retention: p.MaxLookback(),
		Entry: status.Entry{At: now, Worker: w.cfg.Owner, Profile: p.Name, Version: p.Version, Inputs: &status.Inputs{}},
	}
	if in.ExpiresAt != nil {
		req.ExpiresAt = *in.ExpiresAt
	}
	for _, z := range zones {
		req.Entry.Inputs.Zones = append(req.Entry.Inputs.Zones, z.String())
	}
	for i, ch := range chans {
		d := p.Window(ch, zones, now)
		if i == 0 {
			req.Entry.Inputs.LocalTimes = d.Inputs
		}
		if d.Note != "" {
			req.Entry.Inputs.Notes = append(req.Entry.Inputs.Notes, d.Rule.ID+": "+d.Note)
		}
		c := store.Candidate{Channel: string(ch), To: intent.MaskAddress(ch, in.To.For(ch)), WindowOK: d.Allowed, CountIn: w.countIn(in, ch), Address: in.To.For(ch)}
		switch {
		case in.NotBefore != nil && now.Before(*in.NotBefore):
			// Not before not_before: from then on the usual rules. If the
			// windows allow that instant, the intent waits for it (rule
			// not-before); if not, for their next opening after it.
			nb := in.NotBefore.UTC()
			c.WindowOK = false
			if dn := p.Window(ch, zones, nb); dn.Allowed {
				c.WindowNext, c.WindowRule, c.WindowKind = nb, policy.RuleNotBefore, kindNotBefore
			} else {
				c.WindowNext = release(p, dn, in, nb)
				if dn.Rule != nil {
					c.WindowRule, c.WindowKind = dn.Rule.ID, dn.Rule.Kind
				}
			}
		case !d.Allowed:
			c.WindowNext = release(p, d, in, now)
			if d.Rule != nil {
				c.WindowRule, c.WindowKind = d.Rule.ID, d.Rule.Kind
			}
		}
		if a, ok := w.Senders[ch].(interface{ Available() (bool, time.Time) }); ok {
			// A provider whose breaker is open is not a candidate until it
			// lets calls through again: the gate falls back or defers.
			if free, until := a.Available(); !free && (c.WindowOK || until.After(c.WindowNext)) {
				c.WindowOK, c.WindowNext = false, until
				c.WindowRule, c.WindowKind = "provider-unavailable:"+providerName(w.Senders[ch]), "breaker"
			}
		}
		for _, r := range p.TimedRules(ch) {
			req.Entry.Inputs.Checks = append(req.Entry.Inputs.Checks, status.Check{Channel: string(ch), Rule: r.ID, Kind: r.Kind})
		}
		for _, k := range p.Checks(in, ch, zones, now) {
			per := policy.PerCalendarDay
			if k.Sliding > 0 {
				per = k.Sliding.String()
			}
			req.Entry.Inputs.Checks = append(req.Entry.Inputs.Checks, status.Check{Channel: string(ch), Rule: k.Rule.ID, Kind: k.Rule.Kind, Limit: k.Limit, Per: per})
			c.Checks = append(c.Checks, store.Check{
				Stream: w.stream(in, k.Stream.Event, k.Stream.Channel, k.Stream.Scope),
				Since:  k.Since, Limit: k.Limit, Sliding: k.Sliding, Until: k.Until,
				Rule: k.Rule.ID, Kind: k.Rule.Kind,
			})
		}
		req.Candidates = append(req.Candidates, c)
	}
	return req, nil
}

// kindNotBefore is the gate's kind for the not-before rule (reason
// not_before).
const kindNotBefore = "not_before"

// release is when an intent the windows forbid at now is released: the
// next allowed instant, spread over the profile's jitter when it opens a
// window — but never spread past expires_at: an intent that can be sent
// before it expires is released at the window's start rather than expire
// for the jitter's sake. Without an allowed instant in the horizon it looks
// again a day later.
func release(p *policy.Profile, d policy.Decision, in intent.Intent, now time.Time) time.Time {
	if d.Next.IsZero() {
		return now.Add(24 * time.Hour)
	}
	if !d.AtWindowStart {
		return d.Next
	}
	j := p.Jittered(d.Next, in.ID)
	if in.ExpiresAt != nil && !j.Before(*in.ExpiresAt) {
		if span := in.ExpiresAt.Sub(d.Next); span > 0 {
			// Spread within what is left before expiry.
			return d.Next.Add(time.Duration(uint64(j.Sub(d.Next)) % uint64(span)))
		}
		return d.Next
	}
	return j
}

// GateRequest is the gate request the worker would make for in at now (for
// measuring the gate alone).
func (w *Worker) GateRequest(in intent.Intent, now time.Time) store.GateRequest {
	r, _ := w.gateRequest(in, now, w.attempt())
	return r
}

// stream resolves a policy stream to the intent's debtor, debt or number.
func (w *Worker) stream(in intent.Intent, event, ch, scope string) store.Stream {
	s := store.Stream{Event: event, Channel: ch, Scope: scope}
	switch scope {
	case policy.ScopeDebt:
		s.ScopeID = in.DebtID
	case policy.ScopeNumber:
		s.ScopeID = in.To.Phone
	}
	return s
}

// countIn lists the streams a contact on ch is counted in: those the
// profile's rules read (its channel or all channels, for the debtor, the
// debt or the number), and always all channels for the debtor (the recent
// contacts the API shows).
func (w *Worker) countIn(in intent.Intent, ch intent.Channel) []store.Stream {
	return countedIn(w.reads, ch, in.DebtID, store.Stream{ScopeID: in.To.Phone})
}

// call makes one provider call under the send deadline.
func (w *Worker) call(ctx context.Context, s Sender, m channel.Message, reserved bool) (channel.Receipt, error) {
	sctx, cancel := context.WithTimeout(ctx, w.cfg.SendTimeout)
	defer cancel()
	start := time.Now()
	var r channel.Receipt
	var err error
	if rs, ok := s.(reserver); ok && reserved {
		r, err = rs.SendReserved(sctx, m)
	} else {
		r, err = s.Send(sctx, m)
	}
	result := "ok"
	if err != nil {
		result = channel.KindOf(err).String()
	}
	w.Metrics.SendSeconds.WithLabelValues(string(m.Channel), providerName(s), result).Observe(time.Since(start).Seconds())
	return r, err
}

// sendOutcome is what a provider's answer makes of an intent.
type sendOutcome struct {
	state   status.State
	reason  string
	entry   status.Entry
	release bool // the contact did not happen: uncount it
	optOut  bool // the provider says the recipient opted out
	retries int  // deferred: the retries so far, this one included
}

// outcome turns a provider's answer into the intent's next state: the one
// place where a send error becomes a decision.
//   - accepted → sent;
//   - the recipient opted out at the provider → suppressed/opted_out, and the
//     opt-out is recorded;
//   - permanent (this address will never work) → failed;
//   - retryable, or an unknown outcome at a provider that recognises a
//     repeated intent id → deferred with exponential backoff and jitter (at
//     least the provider's Retry-After, or until its breaker lets calls
//     through), then failed once the retries are spent;
//   - an unknown outcome at any other provider → sent_unconfirmed, never
//     resent blindly.
func (w *Worker) outcome(in intent.Intent, ch intent.Channel, s Sender, retries int, r channel.Receipt, err error) sendOutcome {
	if err == nil {
		return sendOutcome{state: status.Sent, entry: status.Entry{Provider: r.Provider, ProviderID: r.ProviderID}}
	}
	var ce *channel.Error
	errors.As(err, &ce)
	e := status.Entry{Provider: providerName(s), Detail: err.Error()}
	if ce != nil {
		e.ErrorCode = ce.Code
	}
	kind := channel.KindOf(err)
	switch {
	case ce != nil && ce.OptOut:
		return sendOutcome{state: status.Suppressed, reason: status.ReasonOptedOut, entry: e, release: true, optOut: true}
	case kind == channel.Permanent:
		return sendOutcome{state: status.Failed, reason: "permanent", entry: e, release: true}
	case kind == channel.Retryable || kind == channel.Unknown && s.Idempotent():
		release := kind == channel.Retryable
		if retries >= w.cfg.RetryLimit {
			return sendOutcome{state: status.Failed, reason: "retries_exhausted", entry: e, release: release}
		}
		now := w.Now().UTC()
		until := now.Add(w.backoff(in.ID, retries))
		if kind == channel.Unknown {
			// A repeat is safe only while the provider still recognises the
			// id: retry soon, twice at most, then leave it unconfirmed.
			win := idempotencyWindow(s)
			if retries >= 2 || win > 0 && w.cfg.RetryBase > win/4 {
				return sendOutcome{state: status.SentUnconfirmed, reason: "unknown_outcome", entry: e}
			}
			if win > 0 && until.Sub(now) > win/4 {
				until = now.Add(win / 4)
			}
		}
		if ce != nil {
			if a := now.Add(ce.RetryAfter); a.After(until) {
				until = a
			}
			if ce.Until.After(until) {
				until = ce.Until
			}
			if (ce.Code == "breaker_open" || ce.Code == "quota") && in.Fallback && len(in.Channels) > 1 {
				// Another channel may take it now; the gate skips this one
				// while its breaker is open.
				until = now
			}
		}
		e.At, e.Until = now, &until
		return sendOutcome{state: status.Deferred, reason: "retry", entry: e, release: release, retries: retries + 1}
	default:
		return sendOutcome{state: status.SentUnconfirmed, reason: "unknown_outcome", entry: e}
	}
}

// backoff is the wait before retry n (0-based): RetryBase·2ⁿ, at most
// RetryMax, spread ±20% by the intent id so retries of a burst do not
// return together.
func (w *Worker) backoff(id string, n int) time.Duration {
	d := w.cfg.RetryBase << min(n, 20)
	if d > w.cfg.RetryMax || d <= 0 {
		d = w.cfg.RetryMax
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	h.Write([]byte{byte(n)})
	spread := float64(h.Sum32()%4001)/10000 - 0.2 // -0.2 … +0.2
	return d + time.Duration(float64(d)*spread)
}

// retriesOf is how many times the intent was retried before (the scheduler
// carries the count on the re-injected message).
func retriesOf(m kafka.Message) int {
	n, _ := strconv.Atoi(kafkaio.Header(m, kafkaio.HeaderRetries))
	return n
}

// idempotencyWindow is how long the provider recognises a repeated intent
// id; 0 means for good.
func idempotencyWindow(s Sender) time.Duration {
	if x, ok := s.(interface{ IdempotencyWindow() time.Duration }); ok {
		return x.IdempotencyWindow()
	}
	return 0
}

func providerName(s Sender) string {
	if n, ok := s.(interface{ Name() string }); ok {
		return n.Name()
	}
	return ""
}

func (w *Worker) finish(ctx context.Context, token string, in intent.Intent, ch intent.Channel, st status.State, reason string, e status.Entry, release ...store.Stream) ([]kafka.Message, error) {
	_, recs, err := w.finishEntry(ctx, token, in, ch, st, reason, e, release...)
	return recs, err
}

// finishEntry records the outcome of an attempt and returns its entry (Seq
// 0 if another worker took the intent over) and events.
func (w *Worker) finishEntry(ctx context.Context, token string, in intent.Intent, ch intent.Channel, st status.State, reason string, e status.Entry, release ...store.Stream) (status.Entry, []kafka.Message, error) {
	var number string
	if st == status.Sent && (ch == intent.SMS || ch == intent.Voice) {
		number = in.To.Phone // a reply from it must find this debtor
	}
	now := w.Now().UTC()
	if e.At.IsZero() {
		e.At = now
	}
	e.State, e.Reason, e.Worker = st, reason, w.cfg.Owner
	seq, err := w.Store.Finish(ctx, store.FinishRequest{
		ID: in.ID, DebtorID: in.DebtorID, Owner: token, Now: now,
		State: st, Reason: reason, Channel: string(ch), Entry: e, Release: release, Number: number,
	})
	if errors.Is(err, store.ErrLeaseLost) {
		// We overran the lease and another worker took the intent over; its
		// decision stands.
		w.Log.Warn("lease lost while sending; the other worker's decision stands", "intent_id", in.ID)
		return status.Entry{}, nil, nil
	}
	if err != nil {
		return status.Entry{}, nil, err
	}
	e.Seq = seq
	w.count(st, reason, string(ch))
	if st == status.Failed || st == status.SentUnconfirmed {
		w.Ops.Failed(opsdata.Failure{At: now, IntentID: in.ID, Channel: string(ch), State: string(st), Reason: reason, Code: e.ErrorCode})
	}
	if st == status.Sent {
		w.Metrics.Sends.WithLabelValues(string(ch), e.Provider).Inc()
	}
	w.Log.Debug("intent decided", "intent_id", in.ID, "debtor_id", in.DebtorID, "state", st, "reason", reason, "channel", ch)
	recs, err := w.events(in.ID, in.DebtorID, e)
	return e, recs, err
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
	w.count(status.Suppressed, status.ReasonDuplicate, "")
	out, err := w.events(rec.ID, rec.DebtorID, rec.Timeline...)
	if err != nil {
		return nil, err
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
	if c.OptOutLink && w.OptOutLinks != nil && ch != intent.Voice {
		if m.OptOutURL, err = w.OptOutLinks(in.DebtorID, ch); err != nil {
			return channel.Message{}, err
		}
	}
	return m, nil
}
