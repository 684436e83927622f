// Package opsdata keeps what the ops page shows: decisions counted per
// minute and per hour, shared by every process through Redis, recent
// failures and DLQ reasons, and the deferred backlog by due hour. Processes
// count in memory and flush every few seconds, so the hot path never waits
// on it. Nothing here holds personal data: ids, channels, states, reasons
// and codes only.
package opsdata

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failure is one intent that ended failed, undelivered or unconfirmed.
type Failure struct {
	At       time.Time `json:"at"`
	IntentID string    `json:"intent_id"`
	Channel  string    `json:"channel,omitempty"`
	State    string    `json:"state"`
	Reason   string    `json:"reason,omitempty"`
	Code     string    `json:"code,omitempty"`
}

// Rejection is one message sent to the DLQ.
type Rejection struct {
	At     time.Time `json:"at"`
	Code   string    `json:"code"`
	Reason string    `json:"reason"` // names fields and rules, never values
}

// Recorder counts one process's decisions until the next flush.
type Recorder struct {
	mu       sync.Mutex
	deltas   map[string]int64 // "state|reason|channel"
	failures []Failure
	rejects  []Rejection
	backlog  map[int64]int // due hour (unix) → deferred intents; set by the scheduler leader
	hasBack  bool
}

// NewRecorder returns an empty Recorder. A nil *Recorder counts nothing.
func NewRecorder() *Recorder { return &Recorder{deltas: map[string]int64{}} }

// Decision counts one decision.
func (r *Recorder) Decision(state, reason, channel string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.deltas[state+"|"+reason+"|"+channel]++
	r.mu.Unlock()
}

// Failed notes a failure for the recent-failures list.
func (r *Recorder) Failed(f Failure) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.failures = append(r.failures, f)
	r.mu.Unlock()
}

// Rejected notes a DLQ record.
func (r *Recorder) Rejected(code, reason string, at time.Time) {
	if r == nil {
		return
	}
	if len(reason) > 300 {
		reason = reason[:300] + "…"
	}
	r.mu.Lock()
	r.rejects = append(r.rejects, Rejection{At: at, Code: code, Reason: reason})
	r.mu.Unlock()
}

// Backlog sets the deferred backlog by due hour (the leading scheduler's).
func (r *Recorder) Backlog(byHour map[int64]int) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.backlog, r.hasBack = byHour, true
	r.mu.Unlock()
}

// Keys of the shared data.
func minuteKey(prefix string, m int64) string { return prefix + "ops:min:" + strconv.FormatInt(m, 10) }
func hourKey(prefix string, h int64) string   { return prefix + "ops:hour:" + strconv.FormatInt(h, 10) }
func failuresKey(prefix string) string        { return prefix + "ops:failures" }
func rejectsKey(prefix string) string         { return prefix + "ops:dlq" }
func backlogKey(prefix string) string         { return prefix + "ops:backlog" }

const keep = 100 // recent failures and DLQ reasons kept

// Flush adds what was counted since the last flush to the shared buckets:
// one pipeline.
func (r *Recorder) Flush(ctx context.Context, rdb redis.UniversalClient, prefix string, now time.Time) error {
	r.mu.Lock()
	deltas, failures, rejects := r.deltas, r.failures, r.rejects
	backlog, hasBack := r.backlog, r.hasBack
	r.deltas, r.failures, r.rejects, r.hasBack = map[string]int64{}, nil, nil, false
	r.mu.Unlock()
	if len(deltas) == 0 && len(failures) == 0 && len(rejects) == 0 && !hasBack {
		return nil
	}
	pipe := rdb.Pipeline()
	mk, hk := minuteKey(prefix, now.Unix()/60), hourKey(prefix, now.Unix()/3600)
	for k, n := range deltas {
		pipe.HIncrBy(ctx, mk, k, n)
		pipe.HIncrBy(ctx, hk, k, n)
	}
	if len(deltas) > 0 {
		pipe.Expire(ctx, mk, 2*time.Hour)
		pipe.Expire(ctx, hk, 26*time.Hour)
	}
	for _, f := range failures {
		b, _ := json.Marshal(f)
		pipe.LPush(ctx, failuresKey(prefix), b)
	}
	if len(failures) > 0 {
		pipe.LTrim(ctx, failuresKey(prefix), 0, keep-1)
	}
	for _, x := range rejects {
		b, _ := json.Marshal(x)
		pipe.LPush(ctx, rejectsKey(prefix), b)
	}
	if len(rejects) > 0 {
		pipe.LTrim(ctx, rejectsKey(prefix), 0, keep-1)
	}
	if hasBack {
		b, _ := json.Marshal(backlog)
		pipe.Set(ctx, backlogKey(prefix), b, time.Minute)
	}
	_, err := pipe.Exec(ctx)
	if err != nil {
		// Put the counts back; the next flush carries them.
		r.mu.Lock()
		for k, n := range deltas {
			r.deltas[k] += n
		}
		r.mu.Unlock()
	}
	return err
}

// Run flushes every interval until ctx ends, and once more at the end,
// stamping each flush with now.
func (r *Recorder) Run(ctx context.Context, rdb redis.UniversalClient, prefix string, every time.Duration, now func() time.Time) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = r.Flush(fctx, rdb, prefix, now())
			cancel()
			return
		case <-t.C:
			_ = r.Flush(ctx, rdb, prefix, now())
		}
	}
}

// Funnel counts decisions over a span.
type Funnel struct {
	Span    string           `json:"span"` // "hour" or "day"
	Total   int64            `json:"total"`
	ByState map[string]int64 `json:"by_state"`
	Reasons map[string]int64 `json:"reasons"` // "state/reason"
}

// ChannelRate is a channel's outcome over the last day.
type ChannelRate struct {
	Channel     string  `json:"channel"`
	Sent        int64   `json:"sent"`
	Failed      int64   `json:"failed"` // failed, undelivered, sent_unconfirmed
	SuccessRate float64 `json:"success_rate"`
}

// BacklogHour is the deferred intents due in one hour.
type BacklogHour struct {
	Hour  time.Time `json:"hour"`
	Count int       `json:"count"`
}

// View is everything the ops page shows from here.
type View struct {
	Hour     Funnel        `json:"last_hour"`
	Day      Funnel        `json:"last_day"`
	Channels []ChannelRate `json:"channels"`
	Failures []Failure     `json:"recent_failures"`
	DLQ      []Rejection   `json:"recent_dlq"`
	Backlog  []BacklogHour `json:"deferred_by_due_hour"`
}

// Read gathers the view: one pipeline.
func Read(ctx context.Context, rdb redis.UniversalClient, prefix string, now time.Time) (View, error) {
	pipe := rdb.Pipeline()
	m := now.Unix() / 60
	h := now.Unix() / 3600
	var mins, hours []*redis.MapStringStringCmd
	for i := int64(0); i < 60; i++ {
		mins = append(mins, pipe.HGetAll(ctx, minuteKey(prefix, m-i)))
	}
	for i := int64(0); i < 24; i++ {
		hours = append(hours, pipe.HGetAll(ctx, hourKey(prefix, h-i)))
	}
	fails := pipe.LRange(ctx, failuresKey(prefix), 0, 19)
	rejs := pipe.LRange(ctx, rejectsKey(prefix), 0, 19)
	back := pipe.Get(ctx, backlogKey(prefix))
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return View{}, err
	}
	v := View{Hour: funnel("hour", mins), Day: funnel("day", hours), Channels: []ChannelRate{}, Failures: []Failure{}, DLQ: []Rejection{}, Backlog: []BacklogHour{}}
	rates := map[string]*ChannelRate{}
	for _, c := range hours {
		for k, s := range c.Val() {
			parts := strings.SplitN(k, "|", 3)
			if len(parts) != 3 || parts[2] == "" {
				continue
			}
			n, _ := strconv.ParseInt(s, 10, 64)
			r := rates[parts[2]]
			if r == nil {
				r = &ChannelRate{Channel: parts[2]}
				rates[parts[2]] = r
			}
			switch parts[0] {
			case "sent", "delivered":
				if parts[0] == "sent" {
					r.Sent += n
				}
			case "failed", "undelivered", "sent_unconfirmed":
				r.Failed += n
			}
		}
	}
	for _, r := range rates {
		if r.Sent+r.Failed > 0 {
			r.SuccessRate = float64(r.Sent) / float64(r.Sent+r.Failed)
			v.Channels = append(v.Channels, *r)
		}
	}
	sort.Slice(v.Channels, func(i, j int) bool { return v.Channels[i].Channel < v.Channels[j].Channel })
	for _, s := range fails.Val() {
		var f Failure
		if json.Unmarshal([]byte(s), &f) == nil {
			v.Failures = append(v.Failures, f)
		}
	}
	for _, s := range rejs.Val() {
		var x Rejection
		if json.Unmarshal([]byte(s), &x) == nil {
			v.DLQ = append(v.DLQ, x)
		}
	}
	var byHour map[int64]int
	if b, err := back.Bytes(); err == nil && json.Unmarshal(b, &byHour) == nil {
		for hr, n := range byHour {
			v.Backlog = append(v.Backlog, BacklogHour{Hour: time.Unix(hr*3600, 0).UTC(), Count: n})
		}
		sort.Slice(v.Backlog, func(i, j int) bool { return v.Backlog[i].Hour.Before(v.Backlog[j].Hour) })
	}
	return v, nil
}

func funnel(span string, cmds []*redis.MapStringStringCmd) Funnel {
	f := Funnel{Span: span, ByState: map[string]int64{}, Reasons: map[string]int64{}}
	for _, c := range cmds {
		for k, s := range c.Val() {
			n, _ := strconv.ParseInt(s, 10, 64)
			parts := strings.SplitN(k, "|", 3)
			if len(parts) < 2 {
				continue
			}
			f.ByState[parts[0]] += n
			f.Total += n
			if parts[1] != "" {
				f.Reasons[parts[0]+"/"+parts[1]] += n
			}
		}
	}
	return f
}
