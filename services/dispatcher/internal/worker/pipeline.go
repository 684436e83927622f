package worker

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// The decision pipeline: decode → validate → gate → send → record, over a
// batch of jobs. A lane runs it over whatever is ready, with many sends in
// flight; Decide runs it over a batch of one. The stages are the same
// functions either way.

// job is one intent on its way through the pipeline.
type job struct {
	m     kafka.Message
	in    intent.Intent
	bad   error         // decode, validation or the profile's requirements failed: rejected
	end   *status.Entry // decided without the gate: expired, or no time is ever allowed
	token string        // the lease token of this attempt (kept when a gate call is repeated)

	plan *plan           // claimed: channel and claim seq; after the call, the outcome to record
	recs []kafka.Message // what to publish once decided
	done bool            // decided and recorded: its offset may be committed once recs are published
	err  error           // the last stage failed for this job (see Worker.next)

	// The lane's bookkeeping.
	key     string         // ordering key: the debtor
	ch      intent.Channel // the channel it is admitted for ("" decided alone)
	next    *job           // the same debtor's next intent in this lane
	retryAt time.Time      // parked until then
	tries   int            // failed stages in a row (backoff)
	stage   stage          // where the job's goroutine is (written before each report)
	proceed chan bool      // the lane's answer after the gate: send (true) or give the slots back
	slots   slots          // what admission holds for the provider call
	busy    *busyChannel
}

// prepare decodes and checks a message against everything that needs no
// Redis: the schema, the templates, the profile's required fields, expiry
// and zones that never share an allowed time.
func (w *Worker) prepare(m kafka.Message) *job {
	w.Metrics.Consumed.Inc()
	j := &job{m: m, token: w.attempt(), key: string(m.Key)}
	in, err := intent.Decode(m.Value)
	if err == nil {
		err = in.Validate(w.Templates)
	}
	if err == nil {
		err = w.Profile.Require(in)
	}
	j.in = in
	if in.DebtorID != "" {
		j.key = in.DebtorID
	}
	if err != nil {
		j.bad = err
		return j
	}
	now := w.Now()
	if in.ExpiresAt != nil && !now.Before(*in.ExpiresAt) {
		j.end = &status.Entry{State: status.Suppressed, Reason: status.ReasonExpired,
			Detail: "expires_at has passed", Rule: policy.RuleExpiresAt}
	} else if e, never := w.neverAllowed(in, now); never {
		j.end = &e
	}
	return j
}

// needsGate reports whether the job goes through the gate (and to a
// provider) rather than being decided alone.
func (j *job) needsGate() bool { return j.bad == nil && j.end == nil }

// decideEnd records the decision of a job that needs no gate: rejected to
// the DLQ, expired, or never allowed.
func (w *Worker) decideEnd(ctx context.Context, j *job) {
	var recs []kafka.Message
	var err error
	if j.bad != nil {
		recs, err = w.reject(ctx, j.m, j.in, j.bad)
	} else {
		recs, err = w.endEntry(ctx, j.in, *j.end)
		if errors.Is(err, errIDConflict) {
			recs, err = w.conflict(j.m, j.in), nil
		}
	}
	j.settle(recs, err)
}

// gateJobs takes jobs through the gate in one Redis pipeline. Each job ends
// decided (done), claimed (plan set: to be sent now) or with err set. An
// error is the whole call's — Redis unreachable, or its state lost — and
// every job is to be gated again with the same tokens, so a claim an
// earlier try made is recognised as this worker's.
func (w *Worker) gateJobs(ctx context.Context, jobs []*job) error {
	now := w.Now().UTC()
	reqs := make([]store.GateRequest, len(jobs))
	for i, j := range jobs {
		r, err := w.gateRequest(j.in, now, j.token)
		if err != nil {
			return err
		}
		j.busy.apply(&r)
		reqs[i] = r
	}
	results, err := w.Store.GateBatch(ctx, reqs)
	if err != nil {
		return err
	}
	for i, j := range jobs {
		recs, p, err := w.afterGate(ctx, j, results[i], true)
		switch {
		case err != nil:
			j.err = err
		case p == nil:
			j.settle(recs, nil)
		default:
			j.recs, j.plan = recs, p
		}
	}
	return nil
}

// sendJob makes the provider call of a claimed job and plans the record of
// its outcome. reserved says admission already waited for the provider's
// rate.
func (w *Worker) sendJob(ctx context.Context, j *job, reserved bool) {
	seq := j.plan.claimSeq
	j.plan = w.attemptSend(ctx, j, j.plan.ch, j.recs, reserved)
	j.plan.claimSeq = seq
}

// finishJobs records the outcomes of called jobs in one Redis pipeline
// (one by one after a pipeline failed part way). An error leaves every job
// to be recorded again.
func (w *Worker) finishJobs(ctx context.Context, jobs []*job) error {
	reqs := make([]store.FinishRequest, len(jobs))
	for i, j := range jobs {
		reqs[i] = j.plan.req
	}
	seqs, err := w.Store.FinishBatch(ctx, reqs)
	if err != nil {
		// Some may be recorded already: record the rest one by one.
		if seqs, err = w.finishEach(ctx, reqs); err != nil {
			return err
		}
	}
	for k, j := range jobs {
		recs, err := w.finished(j, j.plan, seqs[k])
		j.settle(recs, err)
	}
	return nil
}

// settle ends a stage: decided with recs, or failed with err.
func (j *job) settle(recs []kafka.Message, err error) {
	if err != nil {
		j.err = err
		return
	}
	j.recs, j.done, j.err = recs, true, nil
}

// Decide takes one message through the pipeline — a batch of one — and
// returns the records to publish before its offset is committed (status
// events, a DLQ record). An error means nothing final happened and the
// message must be decided again: Redis or a dependency failed, or another
// worker holds the intent. Decide makes no retries and takes no slots; a
// lane does both around the same stages.
func (w *Worker) Decide(ctx context.Context, m kafka.Message) ([]kafka.Message, error) {
	j := w.prepare(m)
	if !j.needsGate() {
		w.decideEnd(ctx, j)
		return j.recs, j.err
	}
	if err := w.gateJobs(ctx, []*job{j}); err != nil {
		return nil, err
	}
	if j.err != nil || j.done {
		return j.recs, j.err
	}
	w.sendJob(ctx, j, false)
	if err := w.finishJobs(ctx, []*job{j}); err != nil {
		return nil, err
	}
	return j.recs, j.err
}

// action is what a failed stage leads to.
type action int

const (
	retryLater   action = iota // a dependency failed: back off and repeat the stage
	waitLease                  // another worker holds the intent: repeat after its lease
	rebuildState               // Redis lost its state: rebuild it before deciding anything
	stopNow                    // shutting down: leave it for the partition's next owner
)

// next maps a failed stage to what follows, and when: the one place where a
// stage's error becomes a course of action (outcome does the same for a
// provider's answer). tries counts the failures so far.
func (w *Worker) next(stopping context.Context, err error, tries int) (action, time.Time) {
	now := w.Now()
	var busy *busyError
	switch {
	case stopping.Err() != nil:
		return stopNow, now
	case errors.Is(err, store.ErrStateLost):
		return rebuildState, now
	case errors.As(err, &busy):
		wait := min(max(busy.until.Sub(now), 50*time.Millisecond), 5*time.Second)
		return waitLease, now.Add(wait)
	default:
		w.Metrics.InfraErrors.Inc()
		return retryLater, now.Add(retryDelay(tries))
	}
}

// retryDelay is the wait before repeating a stage that failed tries times
// (from 1): 100 ms doubled each time, at most 5 s. The one backoff of
// infrastructure failures; send retries back off by Worker.backoff.
func retryDelay(tries int) time.Duration {
	return min(100*time.Millisecond<<min(max(tries-1, 0), 6), 5*time.Second)
}

// busyChannel says admission could not get the provider of a channel in
// time (its concurrency or its rate): the gate treats the channel as
// unavailable until then, so the intent falls back or is deferred, and the
// provider's breaker never hears of it.
type busyChannel struct {
	ch       intent.Channel
	provider string
	until    time.Time
}

// kindProviderBusy is the gate's kind for a channel whose provider is at
// its concurrency or rate (reason provider_busy).
const kindProviderBusy = "provider_busy"

func (b *busyChannel) apply(r *store.GateRequest) {
	if b == nil {
		return
	}
	for i := range r.Candidates {
		c := &r.Candidates[i]
		if c.Channel == string(b.ch) && (c.WindowOK || b.until.After(c.WindowNext)) {
			c.WindowOK, c.WindowNext = false, b.until
			c.WindowRule, c.WindowKind = "provider-busy:"+b.provider, kindProviderBusy
		}
	}
}
