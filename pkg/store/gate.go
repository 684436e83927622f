package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
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
	// Digest, for the number scope, is the number's AddressDigest when
	// the number itself is not known (a stream rebuilt from events, which
	// carry the digest only); ScopeID is then empty.
	Digest string
}

// Stream is the sorted set of a stream's events (member intent id, score
// unix ms): a debtor's and a debt's in the debtor's hash slot; a number's
// in the number's own slot (NumberSlot), whoever the number belongs to.
func (k Keys) Stream(debtorID string, s Stream) string {
	if s.Scope == "number" {
		// Numbers are personal data: keys carry a keyed digest, never the
		// number.
		return k.NumberSlot(k.streamDigest(s)) + ":ev:" + s.Event + ":" + s.Channel
	}
	key := k.Prefix + "{" + debtorID + "}:ev:" + s.Event + ":" + s.Channel + ":" + s.Scope
	if s.ScopeID != "" {
		key += ":" + s.ScopeID
	}
	return key
}

// streamDigest is the digest of a number stream's number.
func (k Keys) streamDigest(s Stream) string {
	if s.Digest != "" {
		return s.Digest
	}
	return k.AddressDigest(s.ScopeID)
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
	Rule    string        // rule id
	Kind    string        // rule kind: cap or gap
}

// Candidate is a channel the intent may be sent on now.
type Candidate struct {
	Channel string
	To      string // masked address, for the timeline
	// Address is the channel's address (number, e-mail, openid): never
	// stored; its keyed digest goes with a claim's entry onto
	// reminders.status, so the contact can be counted again after a loss.
	Address string
	// The time-of-day verdict, decided by the policy before the gate.
	WindowOK                          bool
	WindowNext                        time.Time
	WindowRule, WindowKind, WindowSrc string
	Checks                            []Check
	CountIn                           []Stream // streams a contact on this channel is counted in

	numberOpted bool // the number opted out of this channel (number.lua)
}

// GateRequest asks the gate to decide an intent.
type GateRequest struct {
	ID, DebtorID, Owner, Template string
	Now, LeaseUntil, ExpiresAt    time.Time
	Retention                     time.Duration // how long stream events are kept (the longest lookback)
	Entry                         status.Entry  // the base of the timeline entry: profile, inputs
	Candidates                    []Candidate
	// Preview decides without writing anything: no record, no lease, no
	// contact counted (GatePreview sets it).
	Preview bool
	// DebtID is the intent's debt: holds on that debt apply.
	DebtID string

	numberCounts string // the number's check counts, for gate.lua's entry
}

// ErrStateLost says Redis lost its data (the state marker is gone): nothing
// may be decided until opt-outs and records are rebuilt from Kafka.
var ErrStateLost = errors.New("store: Redis lost the dispatcher's state; rebuild first")

// Gate outcomes beyond the claim's.
const (
	Deferred   Outcome = "deferred"
	Suppressed Outcome = "suppressed"
	// Canceled: a hold without an end on the debtor (or the intent's debt)
	// canceled it; Rule is the hold's reason.
	Canceled Outcome = "canceled"
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
	res, err := s.GateBatch(ctx, []GateRequest{r})
	if err != nil {
		return GateResult{}, err
	}
	return res[0], nil
}

// GatePreview runs the gate as Gate would at r.Now, reading the debtor's
// record, opt-outs and contact streams, and writes nothing: the outcome,
// and the entry Gate would have written (seq 0), of a what-if.
func (s *Store) GatePreview(ctx context.Context, r GateRequest) (GateResult, error) {
	r.Preview = true
	if elsewhere, err := s.boundElsewhere(ctx, r.ID, r.DebtorID); err != nil {
		return GateResult{}, err
	} else if elsewhere {
		return GateResult{Outcome: Conflict}, nil
	}
	n, err := s.numberCallOf(r)
	if err != nil {
		return GateResult{}, err
	}
	if n != nil {
		res, err := numberScript.Run(ctx, s.rdb, n.keys, n.args...).Result()
		if err != nil {
			return GateResult{}, fmt.Errorf("store: gate preview: %w", err)
		}
		if err := n.parse(res); err != nil {
			return GateResult{}, err
		}
		n.apply(&r)
	}
	keys, args, err := s.gateArgs(r)
	if err != nil {
		return GateResult{}, err
	}
	res, err := gateScript.Run(ctx, s.rdb, keys, args...).Result()
	if err != nil {
		return GateResult{}, fmt.Errorf("store: gate preview: %w", err)
	}
	g, err := parseGate(res)
	if err != nil {
		return GateResult{}, err
	}
	if g.Outcome == "lost" {
		return GateResult{}, ErrStateLost
	}
	return g, nil
}

// GateBatch decides several intents in a few pipelines (on a cluster, a
// round trip per node involved in each): the ids bound and the numbers'
// reservations made, the debtors' gates, the reservations settled. Redis
// runs the scripts in order, each atomically, and intents sharing a number
// go in successive rounds, so the decisions are those of calling Gate for
// each in turn.
func (s *Store) GateBatch(ctx context.Context, rs []GateRequest) ([]GateResult, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	// Requests that share a number are decided one round after the other,
	// so that a reservation of one is settled before the next reads the
	// number.
	calls := make([]*numberCall, len(rs))
	var rounds [][]int
	seen := map[string]int{}
	for i, r := range rs {
		n, err := s.numberCallOf(r)
		if err != nil {
			return nil, err
		}
		calls[i] = n
		k := 0
		if n != nil {
			k = seen[n.digest]
			seen[n.digest] = k + 1
		}
		for len(rounds) <= k {
			rounds = append(rounds, nil)
		}
		rounds[k] = append(rounds[k], i)
	}
	// Bind every id (an id bound to another debtor is a conflict and never
	// reaches the gate) and make the first round's reservations: one
	// pipeline.
	var first []*numberCall
	for _, i := range rounds[0] {
		if calls[i] != nil {
			first = append(first, calls[i])
		}
	}
	ours, err := s.bindReserve(ctx, rs, first)
	if err != nil {
		return nil, err
	}
	out := make([]GateResult, len(rs))
	for k, round := range rounds {
		if k > 0 {
			var num []*numberCall
			for _, i := range round {
				if calls[i] != nil && ours[i] {
					num = append(num, calls[i])
				}
			}
			if err := s.reserveNumbers(ctx, num); err != nil {
				return nil, err
			}
		}
		var part []GateRequest
		var idx []int
		for _, i := range round {
			if !ours[i] {
				out[i] = GateResult{Outcome: Conflict}
				continue
			}
			r := rs[i]
			if calls[i] != nil {
				calls[i].apply(&r)
			}
			part, idx = append(part, r), append(idx, i)
		}
		res, err := s.gateRound(ctx, part)
		if err != nil {
			return nil, err
		}
		for j, i := range idx {
			out[i] = res[j]
		}
		// Settle what was reserved: kept on the channel claimed, released
		// everywhere else (all of a conflict's).
		var settle []*numberCall
		var settled []GateResult
		for _, i := range round {
			if n := calls[i]; n != nil && n.reserved {
				settle, settled = append(settle, n), append(settled, out[i])
			}
		}
		if err := s.settleNumbers(ctx, settle, settled); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// gateRound runs gate.lua for each request (one pipeline, in order).
func (s *Store) gateRound(ctx context.Context, rs []GateRequest) ([]GateResult, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	keys := make([][]string, len(rs))
	args := make([][]any, len(rs))
	for i, r := range rs {
		var err error
		if keys[i], args[i], err = s.gateArgs(r); err != nil {
			return nil, err
		}
	}
	cmds := make([]*redis.Cmd, len(rs))
	run := allTrue(len(rs))
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		for i, r := range rs {
			if run[i] {
				cmds[i] = gateScript.EvalSha(ctx, pipe, keys[i], args[i]...)
				pipe.SetArgs(ctx, s.keys.Index(r.ID), r.DebtorID, redis.SetArgs{TTL: s.ttl})
			}
		}
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 {
			// A server without the script (restarted; on a cluster maybe
			// one node): load it and run again only what found it missing
			// — a decision made must not be made twice.
			if again := noScript(cmds, run); again != nil {
				if err := gateScript.Load(ctx, s.rdb).Err(); err != nil {
					return nil, fmt.Errorf("store: gate: %w", err)
				}
				run = again
				continue
			}
			err = firstErr(cmds)
		}
		out := make([]GateResult, len(rs))
		for i, c := range cmds {
			if c.Err() != nil {
				return nil, fmt.Errorf("store: gate: %w", c.Err())
			}
			if out[i], err = parseGate(c.Val()); err != nil {
				return nil, err
			}
			s.claimFields(rs[i], &out[i])
			if out[i].Outcome == "lost" {
				return nil, ErrStateLost
			}
		}
		if err != nil {
			return nil, fmt.Errorf("store: gate: %w", err)
		}
		return out, nil
	}
}

func (s *Store) gateArgs(r GateRequest) ([]string, []any, error) {
	base, err := entryBase(r.Entry)
	if err != nil {
		return nil, nil, err
	}
	check, marker := "0", s.keys.Record(r.DebtorID, r.ID)
	if _, cluster := s.rdb.(*redis.ClusterClient); !cluster {
		check, marker = "1", s.keys.Marker()
	}
	keys := []string{s.keys.Record(r.DebtorID, r.ID), s.keys.OptOuts(r.DebtorID), marker}
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
	preview := "0"
	if r.Preview {
		preview = "1"
	}
	args = append(args, r.ID, r.DebtorID, ms(r.Now), ms(r.LeaseUntil), r.Owner, s.ttlSec, r.Template,
		r.Retention.Milliseconds(), ms(r.ExpiresAt), base, len(r.Candidates), check, preview, r.DebtID, r.numberCounts)
	for _, c := range r.Candidates {
		ok, numOpted := "0", "0"
		if c.WindowOK {
			ok = "1"
		}
		if c.numberOpted {
			numOpted = "1"
		}
		// The number's checks and streams are number.lua's, on its slot.
		checks, countIn := debtorChecks(c.Checks), debtorStreams(c.CountIn)
		args = append(args, c.Channel, jsonString(c.To), ok, ms(c.WindowNext), ruleJSON(c.WindowRule), c.WindowKind, numOpted, len(checks))
		for _, k := range checks {
			args = append(args, keyOf(k.Stream), ms(k.Since), k.Limit, k.Sliding.Milliseconds(), ms(k.Until), ruleJSON(k.Rule), k.Kind)
		}
		args = append(args, len(countIn))
		for _, st := range countIn {
			args = append(args, keyOf(st))
		}
	}
	return keys, args, nil
}

func parseGate(res any) (GateResult, error) {
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
	case Deferred:
		_ = json.Unmarshal([]byte(asString(v[3])), &g.Rule) // the rule id, JSON-encoded
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

// entryBase encodes the start of a gate entry as lua/gate.lua wants it: the
// entry's JSON without its inputs' closing brace and its own.
func entryBase(e status.Entry) (string, error) {
	in := status.Inputs{}
	if e.Inputs != nil {
		in = *e.Inputs
	}
	in.Counts = nil
	if len(in.Zones) == 0 {
		return "", fmt.Errorf("store: gate entry: inputs need zones")
	}
	e.Inputs, e.Seq = nil, 0
	eb, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("store: gate entry: %w", err)
	}
	ib, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("store: gate entry: %w", err)
	}
	return string(eb[:len(eb)-1]) + `,"inputs":` + string(ib[:len(ib)-1]), nil
}

// jsonString encodes s as a JSON string, quotes included.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ruleJSON encodes a rule id like jsonString; ids repeat on every call and
// are few, so their encodings are kept.
func ruleJSON(id string) string {
	if v, ok := quotedRules.Load(id); ok {
		return v.(string)
	}
	q := jsonString(id)
	quotedRules.Store(id, q)
	return q
}

var quotedRules sync.Map

// Providers is the hash where every worker publishes its providers' breaker
// states (field "<owner>|<provider>", value JSON with "updated").
func (k Keys) Providers() string { return k.Prefix + "providers" }

// PutProviderStates publishes this worker's provider states.
func (s *Store) PutProviderStates(ctx context.Context, owner string, states map[string][]byte) error {
	if len(states) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(states))
	for p, v := range states {
		args = append(args, owner+"|"+p, v)
	}
	pipe := s.rdb.Pipeline()
	pipe.HSet(ctx, s.keys.Providers(), args...)
	pipe.Expire(ctx, s.keys.Providers(), time.Hour)
	_, err := pipe.Exec(ctx)
	return err
}

// ProviderStates returns every published provider state, by "<owner>|<provider>".
func (s *Store) ProviderStates(ctx context.Context) (map[string]string, error) {
	return s.rdb.HGetAll(ctx, s.keys.Providers()).Result()
}

// DropProviderStates removes published states (stale ones, or a stopping worker's).
func (s *Store) DropProviderStates(ctx context.Context, fields ...string) error {
	if len(fields) == 0 {
		return nil
	}
	return s.rdb.HDel(ctx, s.keys.Providers(), fields...).Err()
}

// claimFields adds to a claim's entry what the rebuild needs to count the
// contact again (published on reminders.status, never kept in the record):
// the intent's debt and the keyed digest of the address it goes to.
func (s *Store) claimFields(r GateRequest, g *GateResult) {
	if g.Outcome != Claimed {
		return
	}
	g.Entry.DebtID = r.DebtID
	for _, c := range r.Candidates {
		if c.Channel == g.Channel && c.Address != "" {
			g.Entry.ToDigest = s.keys.AddressDigest(c.Address)
		}
	}
}
