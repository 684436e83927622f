package store

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
)

//go:embed lua/gate.lua
var gateLua string

var gateScript = redis.NewScript(gateLua)

// Stream names a series of timestamped contact events of one debtor: the
// event (attempt, connected, conversation), its channel (or "any") and its
// scope — the debtor, one debt (ScopeID = debt id) or one phone number
// (ScopeID = the number, stored hashed).
type Stream struct {
	Event, Channel, Scope, ScopeID string
}

// Stream is the sorted set of a debtor's events (member intent id, score
// unix ms).
func (k Keys) Stream(debtorID string, s Stream) string {
	key := k.Prefix + "{" + debtorID + "}:ev:" + s.Event + ":" + s.Channel + ":" + s.Scope
	switch {
	case s.Scope == "number":
		// Numbers are personal data: keys carry a digest, never the number.
		sum := sha256.Sum256([]byte(debtorID + "|" + s.ScopeID))
		key += ":" + hex.EncodeToString(sum[:10])
	case s.ScopeID != "":
		key += ":" + s.ScopeID
	}
	return key
}

// OptOuts is the hash of a debtor's opt-outs: a field per channel, "all",
// and "dnc" for a legal do-not-contact state.
func (k Keys) OptOuts(debtorID string) string {
	return k.Prefix + "{" + debtorID + "}:optouts"
}

// Check is one frequency rule for one candidate contact: it passes while
// fewer than Limit events of Stream happened at or after Since.
type Check struct {
	Stream  Stream
	Since   time.Time
	Limit   int
	Sliding time.Duration // >0: an event stops counting Sliding after it happened
	Until   time.Time     // Sliding == 0: when the count resets
	Rule    string
	Kind    string
	Source  string
}

// Candidate is a channel the intent may be sent on now.
type Candidate struct {
	Channel string
	To      string // masked address, for the timeline
	// The time-of-day verdict, decided by the policy before the gate.
	WindowOK                          bool
	WindowNext                        time.Time
	WindowRule, WindowKind, WindowSrc string
	Checks                            []Check
	CountIn                           []Stream // streams a contact on this channel is counted in
}

// GateRequest asks the gate to decide an intent.
type GateRequest struct {
	ID, DebtorID, Owner, Template string
	Now, LeaseUntil, ExpiresAt    time.Time
	Retention                     time.Duration // how long stream events are kept (the longest lookback)
	Entry                         status.Entry  // the base of the timeline entry: profile, inputs
	Candidates                    []Candidate
}

// Gate outcomes beyond the claim's.
const (
	Deferred   Outcome = "deferred"
	Suppressed Outcome = "suppressed"
)

// GateResult is the gate's decision.
type GateResult struct {
	Outcome Outcome
	State   status.State
	Seq     int64
	Channel string       // claimed: the channel reserved; stale: the record's channel
	Rule    string       // deferred: the deciding rule; suppressed: the reason
	Holder  string       // busy, stale: the lease holder
	Until   time.Time    // deferred: until; claimed, busy: lease end
	Entry   status.Entry // the entry written (claimed, deferred, suppressed)
}

// Gate runs lua/gate.lua: one round trip per intent (the id index is
// pipelined with it).
func (s *Store) Gate(ctx context.Context, r GateRequest) (GateResult, error) {
	base, err := encodeEntry(r.Entry)
	if err != nil {
		return GateResult{}, err
	}
	keys := []string{s.keys.Record(r.DebtorID, r.ID), s.keys.OptOuts(r.DebtorID)}
	index := map[string]int{}
	keyOf := func(st Stream) string {
		k := s.keys.Stream(r.DebtorID, st)
		i, ok := index[k]
		if !ok {
			keys = append(keys, k)
			i = len(keys)
			index[k] = i
		}
		return strconv.Itoa(i)
	}
	args := make([]any, 0, 16+len(r.Candidates)*24)
	args = append(args, r.ID, r.DebtorID, ms(r.Now), ms(r.LeaseUntil), r.Owner, s.ttlSec, r.Template,
		r.Retention.Milliseconds(), ms(r.ExpiresAt), base, len(r.Candidates))
	for _, c := range r.Candidates {
		ok := "0"
		if c.WindowOK {
			ok = "1"
		}
		args = append(args, c.Channel, c.To, ok, ms(c.WindowNext), c.WindowRule, c.WindowKind, c.WindowSrc, len(c.Checks))
		for _, k := range c.Checks {
			args = append(args, keyOf(k.Stream), ms(k.Since), k.Limit, k.Sliding.Milliseconds(), ms(k.Until), k.Rule, k.Kind, k.Source)
		}
		args = append(args, len(c.CountIn))
		for _, st := range c.CountIn {
			args = append(args, keyOf(st))
		}
	}
	res, err := s.evalIndexed(ctx, gateScript, keys, r.DebtorID, r.ID, args)
	if err != nil {
		return GateResult{}, fmt.Errorf("store: gate: %w", err)
	}
	v, err := replyList(res, 7)
	if err != nil {
		return GateResult{}, fmt.Errorf("store: gate: %w", err)
	}
	g := GateResult{
		Outcome: Outcome(asString(v[0])),
		State:   status.State(asString(v[1])),
		Seq:     asInt(v[2]),
		Channel: asString(v[5]),
	}
	switch g.Outcome {
	case Busy, Stale:
		g.Holder, g.Until = asString(v[3]), time.UnixMilli(asInt(v[4]))
	case Claimed:
		g.Until = time.UnixMilli(asInt(v[4]))
	default:
		g.Rule = asString(v[3])
		if u := asInt(v[4]); u > 0 {
			g.Until = time.UnixMilli(u)
		}
	}
	if e := asString(v[6]); e != "" {
		if err := json.Unmarshal([]byte(e), &g.Entry); err != nil {
			return GateResult{}, fmt.Errorf("store: gate entry: %w", err)
		}
		g.Entry.Seq = g.Seq
		if g.Entry.UntilMS != 0 {
			u := time.UnixMilli(g.Entry.UntilMS).UTC()
			g.Entry.Until, g.Entry.UntilMS = &u, 0
		}
	}
	return g, nil
}
