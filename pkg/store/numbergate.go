package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/number.lua
var numberLua string

var numberScript = redis.NewScript(numberLua)

//go:embed lua/settle.lua
var settleLua string

var settleScript = redis.NewScript(settleLua)

// PendingHold is how long a reservation on a number's streams stays pending
// (counted, and freeing a full check at its end) while the gate decides on
// the debtor's slot. Settled within a round trip; one never settled (the
// worker crashed) counts as a contact from then on.
const PendingHold = 10 * time.Second

// numberCall is the number.lua call of one gate request: its number's
// checks and streams, and what the script answered.
type numberCall struct {
	id, owner string // the intent, and the lease token that reserves
	digest    string
	keys      []string
	args      []any
	channels  []string   // per script candidate, its channel
	cands     []int      // per script candidate, its index in the request
	countIn   [][]string // per script candidate, the stream keys its contact counts in
	verdicts  []numberVerdict
	reserved  bool
}

type numberVerdict struct {
	free       int64 // 0: passes (reserved); -1: the number opted out; else frees then (ms)
	rule, kind string
	counts     []string
	added      []string // stream keys the id was added to
}

func isNumberStream(st Stream) bool { return st.Scope == "number" }

// notNumber returns xs without the elements on a number's stream (xs
// itself when there are none: the gate's hot path allocates nothing).
func notNumber[T any](xs []T, stream func(T) Stream) []T {
	for i, x := range xs {
		if isNumberStream(stream(x)) {
			out := append([]T(nil), xs[:i]...)
			for _, x := range xs[i+1:] {
				if !isNumberStream(stream(x)) {
					out = append(out, x)
				}
			}
			return out
		}
	}
	return xs
}

// onlyNumber returns the elements of xs on a number's stream.
func onlyNumber[T any](xs []T, stream func(T) Stream) []T {
	var out []T
	for _, x := range xs {
		if isNumberStream(stream(x)) {
			out = append(out, x)
		}
	}
	return out
}

func checkStream(c Check) Stream { return c.Stream }
func itself(st Stream) Stream    { return st }

// debtorChecks are the checks gate.lua evaluates: all but the number's.
func debtorChecks(cs []Check) []Check { return notNumber(cs, checkStream) }

// debtorStreams are the streams gate.lua counts a contact in.
func debtorStreams(ss []Stream) []Stream { return notNumber(ss, itself) }

func phoneChannel(ch string) bool { return ch == "sms" || ch == "voice" }

// numberCallOf builds the number.lua call of r: nil when r has no phone
// candidate with a number (nothing of a number's applies).
func (s *Store) numberCallOf(r GateRequest) (*numberCall, error) {
	digest := ""
	use := func(d string) error {
		if digest == "" {
			digest = d
		} else if d != digest {
			return fmt.Errorf("store: gate: intent %s names two phone numbers", r.ID)
		}
		return nil
	}
	// One number per intent: its digest (an HMAC) is computed once.
	var addr, addrDigest string
	digestOf := func(st Stream) string {
		if st.Digest != "" {
			return st.Digest
		}
		if addrDigest == "" || st.ScopeID != addr {
			addr, addrDigest = st.ScopeID, s.keys.AddressDigest(st.ScopeID)
		}
		return addrDigest
	}
	needed := false
	for _, c := range r.Candidates {
		if !phoneChannel(c.Channel) {
			continue
		}
		for _, k := range c.Checks {
			if isNumberStream(k.Stream) {
				needed = true
				if err := use(digestOf(k.Stream)); err != nil {
					return nil, err
				}
			}
		}
		for _, st := range c.CountIn {
			if isNumberStream(st) {
				needed = true
				if err := use(digestOf(st)); err != nil {
					return nil, err
				}
			}
		}
		if c.Address != "" {
			if err := use(digestOf(Stream{ScopeID: c.Address})); err != nil {
				return nil, err
			}
			if c.Channel == "sms" {
				needed = true // the number's keyword opt-out
			}
		}
	}
	if !needed || digest == "" {
		return nil, nil
	}
	n := &numberCall{id: r.ID, owner: r.Owner, digest: digest, keys: []string{s.keys.NumberPending(digest), s.keys.NumberOptOuts(digest)}}
	check := "0"
	if _, cluster := s.rdb.(*redis.ClusterClient); !cluster {
		check = "1"
		n.keys = append(n.keys, s.keys.Marker())
	}
	index := map[string]int{}
	keyOf := func(st Stream) int {
		st.Digest = digest // every number stream of r is this number's: no digest to compute again
		k := s.keys.Stream(r.DebtorID, st)
		i, ok := index[k]
		if !ok {
			n.keys = append(n.keys, k)
			i = len(n.keys)
			index[k] = i
		}
		return i
	}
	preview := "0"
	if r.Preview {
		preview = "1"
	}
	n.args = []any{r.ID, ms(r.Now), r.Owner, ms(r.Now.Add(PendingHold)), r.Retention.Milliseconds(), preview, check, 0}
	for i, c := range r.Candidates {
		if !phoneChannel(c.Channel) {
			continue
		}
		checks, countIn := onlyNumber(c.Checks, checkStream), onlyNumber(c.CountIn, itself)
		n.channels, n.cands = append(n.channels, c.Channel), append(n.cands, i)
		n.args = append(n.args, c.Channel, len(checks))
		for _, k := range checks {
			n.args = append(n.args, strconv.Itoa(keyOf(k.Stream)), ms(k.Since), k.Limit, k.Sliding.Milliseconds(), ms(k.Until), ruleJSON(k.Rule), k.Kind)
		}
		n.args = append(n.args, len(countIn))
		var keys []string
		for _, st := range countIn {
			k := keyOf(st)
			n.args = append(n.args, strconv.Itoa(k))
			keys = append(keys, n.keys[k-1])
		}
		n.countIn = append(n.countIn, keys)
	}
	n.args[7] = len(n.cands)
	return n, nil
}

// parse reads number.lua's answer.
func (n *numberCall) parse(res any) error {
	if v, ok := res.([]any); ok && len(v) == 1 && asString(v[0]) == "lost" {
		return ErrStateLost
	}
	v, err := replyList(res, 1+len(n.cands))
	if err != nil {
		return fmt.Errorf("store: gate number: %w", err)
	}
	n.reserved = asInt(v[0]) == 1
	n.verdicts = make([]numberVerdict, len(n.cands))
	for j := range n.cands {
		c, err := replyList(v[1+j], 5)
		if err != nil {
			return fmt.Errorf("store: gate number: %w", err)
		}
		vd := numberVerdict{free: asInt(c[0]), rule: asString(c[1]), kind: asString(c[2])}
		counts, _ := c[3].([]any)
		for _, x := range counts {
			vd.counts = append(vd.counts, asString(x))
		}
		added, _ := c[4].([]any)
		for _, x := range added {
			if k := int(asInt(x)); k >= 1 && k <= len(n.keys) {
				vd.added = append(vd.added, n.keys[k-1])
			}
		}
		n.verdicts[j] = vd
	}
	return nil
}

// apply hands the number's verdict to the debtor's gate request: an opt-out
// of the number as the candidate's, a check that does not pass as part of
// its window verdict (the later of the two decides, like any rule), the
// counts for the decision's inputs.
func (n *numberCall) apply(r *GateRequest) {
	cands := append([]Candidate(nil), r.Candidates...)
	seen := map[string]bool{}
	var counts []string
	for j, vd := range n.verdicts {
		c := &cands[n.cands[j]]
		for _, m := range vd.counts {
			rule := m[:strings.LastIndexByte(m, ':')]
			if !seen[rule] {
				seen[rule] = true
				counts = append(counts, m)
			}
		}
		switch {
		case vd.free < 0:
			c.numberOpted = true
		case vd.free > 0 && (c.WindowOK || vd.free > ms(c.WindowNext)):
			var rule string
			_ = json.Unmarshal([]byte(vd.rule), &rule)
			c.WindowOK, c.WindowNext = false, time.UnixMilli(vd.free).UTC()
			c.WindowRule, c.WindowKind = rule, vd.kind
		}
	}
	r.Candidates, r.numberCounts = cands, strings.Join(counts, ",")
}

// settle returns what the settle.lua call for the gate's result needs: the
// streams to take the reservation out of (all it was added to, except the
// claimed channel's).
func (n *numberCall) settleKeys(g GateResult) []string {
	// A stream the claimed channel counts in is kept, whichever candidate
	// added the intent to it (one counting both SMS and calls, "any").
	seen := map[string]bool{}
	if g.Outcome == Claimed || g.Outcome == Stale {
		for j, ch := range n.channels {
			if ch == g.Channel {
				for _, k := range n.countIn[j] {
					seen[k] = true
				}
			}
		}
	}
	keys := []string{n.keys[0]}
	for _, vd := range n.verdicts {
		for _, k := range vd.added {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// reserveNumbers runs number.lua for each call (one pipeline).
func (s *Store) reserveNumbers(ctx context.Context, calls []*numberCall) error {
	if len(calls) == 0 {
		return nil
	}
	return s.runScripts(ctx, numberScript, len(calls), func(i int) ([]string, []any) { return calls[i].keys, calls[i].args },
		func(i int, res any) error { return calls[i].parse(res) })
}

// settleNumbers runs settle.lua for each call, reserved, with its gate
// result (one pipeline). A reservation that could not be settled stays
// pending until its hold ends and then counts: an over-count, never an
// under-count.
func (s *Store) settleNumbers(ctx context.Context, calls []*numberCall, results []GateResult) error {
	if len(calls) == 0 {
		return nil
	}
	return s.runScripts(ctx, settleScript, len(calls), func(i int) ([]string, []any) {
		return calls[i].settleKeys(results[i]), []any{calls[i].id, calls[i].owner}
	}, func(int, any) error { return nil })
}

// runScripts runs script n times in one pipeline and hands each reply to
// parse. When Redis does not know the script (a restarted server; on a
// cluster, maybe one node) it is loaded and only the calls that found it
// missing run again, so no call runs twice.
func (s *Store) runScripts(ctx context.Context, script *redis.Script, n int, call func(int) ([]string, []any), parse func(int, any) error) error {
	cmds := make([]*redis.Cmd, n)
	run := allTrue(n)
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		for i := 0; i < n; i++ {
			if run[i] {
				keys, args := call(i)
				cmds[i] = script.EvalSha(ctx, pipe, keys, args...)
			}
		}
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 {
			if again := noScript(cmds, run); again != nil {
				if err := script.Load(ctx, s.rdb).Err(); err != nil {
					return fmt.Errorf("store: load script: %w", err)
				}
				run = again
				continue
			}
		}
		for i, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("store: gate number: %w", c.Err())
			}
			if err := parse(i, c.Val()); err != nil {
				return err
			}
		}
		return nil
	}
}

// releaseNumbers takes released contacts out of their number's streams
// (in the number's slot, so not in finish.lua's call): those whose outcome
// was recorded (seq > 0).
func (s *Store) releaseNumbers(ctx context.Context, rs []FinishRequest, seqs []int64) error {
	var pipe redis.Pipeliner
	for i, r := range rs {
		if seqs[i] <= 0 {
			continue
		}
		for _, st := range r.Release {
			if isNumberStream(st) {
				if pipe == nil {
					pipe = s.rdb.Pipeline()
				}
				pipe.ZRem(ctx, s.keys.Stream(r.DebtorID, st), r.ID)
			}
		}
	}
	if pipe == nil {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: release number: %w", err)
	}
	return nil
}
