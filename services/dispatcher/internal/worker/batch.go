package worker

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// decideBatch decides a lane's batch in order and returns the records to
// publish and how many messages (a prefix of msgs) reached a decision.
// Consecutive valid intents go through the gate together, in one Redis
// pipeline, and their outcomes are recorded together in another: two round
// trips for the run, whatever its length. Anything unusual (invalid,
// expired, a duplicate, an intent another worker holds) is decided alone.
//
// lost says Redis lost its state: the messages after done must wait until it
// is rebuilt.
func (w *Worker) decideBatch(stopping, work context.Context, msgs []kafka.Message) (out []kafka.Message, done int, lost bool) {
	var run []*job
	flush := func() bool {
		recs, n, l := w.runBatch(stopping, work, run)
		out = append(out, recs...)
		done += n
		lost = lost || l
		complete := n == len(run)
		run = run[:0]
		return complete
	}
	for _, m := range msgs {
		if stopping.Err() != nil {
			break // shutting down: the rest is left for the partition's next owner
		}
		in, err := intent.Decode(m.Value)
		if err == nil {
			err = in.Validate(w.Templates)
		}
		if err == nil {
			err = w.Profile.Require(in)
		}
		never := false
		if err == nil {
			_, never = w.neverAllowed(in, w.Now())
		}
		if err != nil || in.ExpiresAt != nil && !w.Now().Before(*in.ExpiresAt) || never {
			if len(run) > 0 && !flush() {
				return out, done, lost
			}
			recs, err := w.decideRetrying(stopping, work, m, false)
			if err != nil {
				return out, done, errors.Is(err, store.ErrStateLost)
			}
			out = append(out, recs...)
			done++
			continue
		}
		w.Metrics.Consumed.Inc()
		run = append(run, &job{m: m, in: in, token: w.attempt()})
		if len(run) >= w.runLimit() && !flush() {
			return out, done, lost
		}
	}
	if len(run) > 0 {
		flush()
	}
	return out, done, lost
}

// runLimit is how many intents may pass the gate together: as many as the
// providers send within GateWindow. A claimed intent is sent even if an
// opt-out lands after its claim, so the window bounds how late an opt-out
// can be for intents already through the gate.
func (w *Worker) runLimit() int {
	avg := time.Duration(w.sendNanos.Load())
	if avg <= 0 {
		return min(16, w.cfg.MaxBatch) // no send measured yet: start small
	}
	return max(1, min(w.cfg.MaxBatch, int(w.cfg.GateWindow/avg)))
}

// noteSend folds one provider call's duration into the running average.
func (w *Worker) noteSend(d time.Duration) {
	for {
		old := w.sendNanos.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/8
		}
		if w.sendNanos.CompareAndSwap(old, next) {
			return
		}
	}
}

// runBatch takes a run of valid intents through the gate together, sends
// the claimed ones, and records their outcomes together. It returns how
// many of the run were decided: all of them, unless shutdown cut it short.
func (w *Worker) runBatch(stopping, work context.Context, run []*job) ([]kafka.Message, int, bool) {
	now := w.Now().UTC()
	reqs := make([]store.GateRequest, 0, len(run))
	for _, j := range run {
		r, err := w.gateRequest(j.in, now, j.token)
		if err != nil {
			return nil, 0, false
		}
		reqs = append(reqs, r)
	}
	// A failed pipeline may have run some scripts: the same tokens are sent
	// again, so an intent already claimed by this try is recognised as ours.
	var results []store.GateResult
	lost := false
	if !w.retry(stopping, func() error {
		var err error
		results, err = w.Store.GateBatch(work, reqs)
		if errors.Is(err, store.ErrStateLost) {
			lost = true
			return nil
		}
		return err
	}) || lost {
		return nil, 0, lost
	}

	recs := make([][]kafka.Message, len(run))
	plans := make([]*plan, len(run))
	alone := make([]bool, len(run))
	decided := len(run)
	for i, j := range run {
		if stopping.Err() != nil && decided == len(run) {
			decided = i // from here on, give back what was claimed
		}
		r, p, err := w.afterGate(work, j, results[i], true)
		if err != nil {
			alone[i] = true // busy, or a dependency failed: decided alone below
			continue
		}
		recs[i] = r
		if p == nil {
			continue
		}
		if i >= decided {
			// Not sent: release the claim so the next owner decides it.
			until := now
			plans[i] = &plan{ch: p.ch, recs: r, req: store.FinishRequest{
				ID: j.in.ID, DebtorID: j.in.DebtorID, Owner: j.token, Now: now,
				State: status.Deferred, Reason: "shutdown", Channel: string(p.ch), Release: w.countIn(j.in, p.ch),
				Entry: status.Entry{At: now, State: status.Deferred, Reason: "shutdown", Worker: w.cfg.Owner, Until: &until,
					Detail: "the worker stopped before sending; the next one decides it"},
			}}
			continue
		}
		plans[i] = w.attemptSend(work, j, p.ch, r)
		plans[i].claimSeq = p.claimSeq
		if plans[i].err != nil {
			plans[i], alone[i] = nil, true
		}
	}

	var reqsF []store.FinishRequest
	var idx []int
	for i, p := range plans {
		if p != nil {
			reqsF = append(reqsF, p.req)
			idx = append(idx, i)
		}
	}
	if len(reqsF) > 0 {
		var seqs []int64
		if !w.retry(stopping, func() error {
			var err error
			seqs, err = w.Store.FinishBatch(work, reqsF)
			if err != nil {
				// Some may be recorded already: record the rest one by one.
				seqs, err = w.finishEach(work, reqsF)
			}
			return err
		}) {
			return nil, 0, false
		}
		for k, i := range idx {
			if i >= decided {
				recs[i] = w.shutdownRecs(run[i], plans[i], seqs[k])
				continue
			}
			r, err := w.finished(run[i], plans[i], seqs[k])
			if err != nil {
				alone[i] = true
				continue
			}
			recs[i] = r
		}
	}

	var out []kafka.Message
	for i := 0; i < len(run); i++ {
		if i >= decided {
			out = append(out, recs[i]...) // recorded transitions; the messages are redelivered
			continue
		}
		if alone[i] {
			r, err := w.decideRetrying(stopping, work, run[i].m, true)
			if err != nil {
				return out, i, errors.Is(err, store.ErrStateLost)
			}
			recs[i] = r
		}
		out = append(out, recs[i]...)
	}
	return out, decided, false
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

// shutdownRecs are the events of a claim given back at shutdown.
func (w *Worker) shutdownRecs(j *job, p *plan, seq int64) []kafka.Message {
	if seq == 0 {
		return p.recs
	}
	e := p.req.Entry
	e.Seq = seq
	more, _ := w.events(j.in.ID, j.in.DebtorID, e)
	return append(p.recs, more...)
}

// retry runs f until it succeeds, backing off, or until shutdown.
func (w *Worker) retry(stopping context.Context, f func() error) bool {
	delay := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return true
		}
		w.Metrics.InfraErrors.Inc()
		w.Log.Warn("cannot reach Redis; retrying", "err", err)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-stopping.Done():
			t.Stop()
			return false
		}
		delay = min(delay*2, 5*time.Second)
	}
}
