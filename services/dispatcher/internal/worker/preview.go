package worker

import (
	"context"
	"errors"
	"time"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/policy"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/store"
)

// Decisions a preview answers.
const (
	PreviewSend     = "send"
	PreviewDefer    = "defer"
	PreviewSuppress = "suppress"
	PreviewReject   = "reject"
)

// Preview is what the gate would decide for an intent at an instant, and
// why: the rule that decides and its source, every rule evaluated with its
// count and limit, the zones and their local times.
type Preview struct {
	Decision string     `json:"decision"`
	At       time.Time  `json:"at"`
	Channel  string     `json:"channel,omitempty"`
	Until    *time.Time `json:"until,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Rule     string     `json:"rule,omitempty"`
	Source   string     `json:"source,omitempty"`
	// Sources: for a send, the source of every rule that could have
	// blocked it.
	Sources        map[string]string   `json:"sources,omitempty"`
	Detail         string              `json:"detail,omitempty"`
	Profile        string              `json:"profile"`
	ProfileVersion string              `json:"profile_version"`
	Checks         []status.Check      `json:"checks,omitempty"`
	Zones          []string            `json:"zones,omitempty"`
	LocalTimes     []string            `json:"local_times,omitempty"`
	Notes          []string            `json:"notes,omitempty"`
	Errors         []intent.FieldError `json:"errors,omitempty"`
}

// PreviewStore is the gate the previewer asks.
type PreviewStore interface {
	GatePreview(ctx context.Context, r store.GateRequest) (store.GateResult, error)
}

// Previewer answers what-ifs with the worker's own decision code: the same
// validation, expiry and zone checks, the same gate request, and the gate
// script in preview mode, which counts the debtor's real contacts and
// opt-outs and writes nothing. Provider breakers are not consulted (the API
// process has none): a send answered here may still wait for a provider.
type Previewer struct {
	w  *Worker
	st PreviewStore
}

// NewPreviewer returns a Previewer deciding under profile.
func NewPreviewer(st PreviewStore, templates Templates, profile *policy.Profile) *Previewer {
	w := &Worker{Deps: Deps{Templates: templates, Profile: profile}, reads: readsOf(profile)}
	w.cfg.defaults()
	w.cfg.Owner = "preview"
	return &Previewer{w: w, st: st}
}

// Preview decides in at at. It returns an error only when Redis fails or
// lost its state.
func (pv *Previewer) Preview(ctx context.Context, in intent.Intent, at time.Time) (Preview, error) {
	p := pv.w.Profile
	at = at.UTC()
	out := Preview{At: at, Profile: p.Name, ProfileVersion: p.Version}
	err := in.Validate(pv.w.Templates)
	if err == nil {
		err = p.Require(in)
	}
	if err != nil {
		var ie *intent.Error
		if !errors.As(err, &ie) {
			return Preview{}, err
		}
		out.Decision, out.Reason, out.Errors = PreviewReject, status.ReasonInvalid, ie.Fields
		return out, nil
	}
	if in.ExpiresAt != nil && !at.Before(*in.ExpiresAt) {
		out.Decision, out.Reason, out.Rule, out.Detail = PreviewSuppress, status.ReasonExpired, policy.RuleExpiresAt, "expires_at has passed"
		out.Source = p.Source(policy.RuleExpiresAt)
		return out, nil
	}
	if e, never := pv.w.neverAllowed(in, at); never {
		out.Decision, out.Reason, out.Rule, out.Detail = PreviewSuppress, e.Reason, e.Rule, e.Detail
		out.Source = p.Source(e.Rule)
		out.Zones, out.LocalTimes = e.Inputs.Zones, e.Inputs.LocalTimes
		return out, nil
	}
	req, err := pv.w.gateRequest(in, at, "preview")
	if err != nil {
		return Preview{}, err
	}
	res, err := pv.st.GatePreview(ctx, req)
	if err != nil {
		return Preview{}, err
	}
	e := res.Entry
	if e.Inputs == nil {
		e.Inputs = req.Entry.Inputs
	}
	e.Inputs.Explain()
	out.Channel, out.Detail = res.Channel, e.Detail
	out.Zones, out.LocalTimes, out.Notes = e.Inputs.Zones, e.Inputs.LocalTimes, e.Inputs.Notes
	out.Checks = e.Inputs.Checks
	switch res.Outcome {
	case store.Claimed:
		out.Decision, out.Rule = PreviewSend, "allowed"
		out.Sources = policy.SendSources(out.Checks, res.Channel, false, p.Source)
	case store.Deferred:
		u := res.Until.UTC()
		out.Decision, out.Until, out.Reason, out.Rule = PreviewDefer, &u, e.Reason, res.Rule
		out.Source = p.Source(res.Rule)
	case store.Suppressed:
		out.Decision, out.Reason, out.Rule = PreviewSuppress, res.Rule, e.Rule
		out.Source = p.Source(e.Rule)
	case store.Canceled:
		out.Decision, out.Reason, out.Rule = PreviewSuppress, res.Rule, "hold"
		out.Detail = e.Detail
	case store.Conflict:
		out.Decision, out.Reason = PreviewReject, CodeIDConflict
		out.Errors = []intent.FieldError{{Field: "debtor_id", Code: CodeIDConflict, Message: "this intent id belongs to another debtor_id"}}
	case store.Duplicate, store.Busy, store.Stale:
		// The id was decided (or is being sent): the gate would not send it again.
		out.Decision, out.Reason = PreviewSuppress, status.ReasonDuplicate
		out.Detail = "intent " + in.ID + " is " + string(res.State)
	default:
		return Preview{}, errors.New("preview: unexpected gate outcome " + string(res.Outcome))
	}
	return out, nil
}

// readsOf lists the streams a profile's count rules read.
func readsOf(p *policy.Profile) map[policy.Stream]bool {
	reads := map[policy.Stream]bool{}
	for _, r := range p.Rules {
		if r.Kind == policy.KindCap || r.Kind == policy.KindGap {
			reads[r.Stream] = true
		}
	}
	return reads
}
