// Package store keeps the dispatcher's hot state in Redis: intent records
// (status and timeline), and the atomic decisions made on them. Every key is
// built by Keys and carries the debtor's {hash tag}, so every script runs
// unchanged on Redis Cluster. The durable copy of everything here lives in
// Kafka; this is the fast, shared view all replicas decide on.
package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/status"
)

// ErrNotFound is returned for an intent the store does not know.
var ErrNotFound = errors.New("not found")

// Keys builds every Redis key the dispatcher uses.
type Keys struct {
	Prefix string // namespace, e.g. "dsp:"
	// AddressKey keys the digests of contact addresses (AddressDigest).
	AddressKey []byte
}

// Record is the hash holding one intent's status and timeline.
func (k Keys) Record(debtorID, id string) string {
	return k.Prefix + "{" + debtorID + "}:intent:" + id
}

// Index maps an intent id to its debtor, so records can be found by id alone.
func (k Keys) Index(id string) string {
	return k.Prefix + "intent:" + id
}

// Config configures a Store.
type Config struct {
	Prefix    string        // key namespace; default "dsp:"
	RecordTTL time.Duration // how long a record is kept after its last change; default 90 days
	// AddressKey keys the digests of phone numbers, e-mail addresses and
	// openids in keys and events (a secret: DISPATCHER_ADDRESS_KEY). Changing
	// it starts every per-number count and the number index afresh.
	AddressKey []byte
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "dsp:"
	}
	if c.RecordTTL == 0 {
		c.RecordTTL = 90 * 24 * time.Hour
	}
}

// Validate reports a config that cannot work.
func (c Config) Validate() error {
	if c.RecordTTL < time.Hour {
		return fmt.Errorf("store: record TTL %s is under an hour", c.RecordTTL)
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return fmt.Errorf("store: prefix %q must not contain braces", c.Prefix)
	}
	return nil
}

var (
	//go:embed lua/claim.lua
	claimLua string
	//go:embed lua/finish.lua
	finishLua string
	//go:embed lua/accept.lua
	acceptLua string
)

// Store is the Redis store. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	keys   Keys
	ttl    time.Duration
	ttlSec string
	claim  *redis.Script
	finish *redis.Script
	accept *redis.Script
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, cfg Config) (*Store, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Store{
		rdb:    rdb,
		keys:   Keys{Prefix: cfg.Prefix, AddressKey: cfg.AddressKey},
		ttl:    cfg.RecordTTL,
		ttlSec: strconv.FormatInt(int64(cfg.RecordTTL/time.Second), 10),
		claim:  redis.NewScript(claimLua),
		finish: redis.NewScript(finishLua),
		accept: redis.NewScript(acceptLua),
	}, nil
}

// Keys returns the store's key builder.
func (s *Store) Keys() Keys { return s.keys }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.rdb.Ping(ctx).Err()
}

// Outcome of a claim.
type Outcome string

// Claim outcomes; see lua/claim.lua.
const (
	Claimed   Outcome = "claimed"
	Duplicate Outcome = "duplicate"
	Busy      Outcome = "busy"
	Stale     Outcome = "stale"
)

// ClaimRequest asks to move an intent to Target (sending, or an end state
// decided without sending).
type ClaimRequest struct {
	ID, DebtorID string
	Owner        string
	Now          time.Time
	LeaseUntil   time.Time // with Target sending
	Target       status.State
	Reason       string
	Channel      string
	Template     string
	Entry        status.Entry
}

// ClaimResult is what the claim found and did.
type ClaimResult struct {
	Outcome    Outcome
	State      status.State // the record's state after the call
	Seq        int64        // the new entry's seq when Claimed; the record's newest otherwise
	Owner      string       // the lease holder when Busy; the previous one when Stale
	LeaseUntil time.Time
}

// Claim runs lua/claim.lua: one round trip (the id index is pipelined with it).
func (s *Store) Claim(ctx context.Context, r ClaimRequest) (ClaimResult, error) {
	if err := s.Bind(ctx, r.ID, r.DebtorID); errors.Is(err, ErrIDConflict) {
		return ClaimResult{Outcome: Conflict}, nil
	} else if err != nil {
		return ClaimResult{}, err
	}
	entry, err := encodeEntry(r.Entry)
	if err != nil {
		return ClaimResult{}, err
	}
	args := []any{r.ID, r.DebtorID, ms(r.Now), ms(r.LeaseUntil), r.Owner, s.ttlSec,
		string(r.Target), r.Reason, r.Channel, r.Template, entry}
	res, err := s.runIndexed(ctx, s.claim, r.DebtorID, r.ID, args)
	if err != nil {
		return ClaimResult{}, fmt.Errorf("store: claim: %w", err)
	}
	v, err := replyList(res, 5)
	if err != nil {
		return ClaimResult{}, fmt.Errorf("store: claim: %w", err)
	}
	return ClaimResult{
		Outcome:    Outcome(asString(v[0])),
		State:      status.State(asString(v[1])),
		Seq:        asInt(v[2]),
		Owner:      asString(v[3]),
		LeaseUntil: time.UnixMilli(asInt(v[4])),
	}, nil
}

// FinishRequest records the outcome of a send by the lease holder.
type FinishRequest struct {
	ID, DebtorID string
	Owner        string
	Now          time.Time
	State        status.State
	Reason       string
	Channel      string
	Entry        status.Entry
	// Release lists the streams the contact was counted in, to uncount it:
	// the send failed for certain before a provider accepted it.
	Release []Stream
	// CountIn lists the streams the claim counted the contact in, and
	// Retention how long they keep events: when the record is gone (Redis
	// lost its data while the provider was called), the contact is counted
	// there again at Now, so that a rebuild that ran before this outcome was
	// published still holds the caps and gaps (never with Release).
	CountIn   []Stream
	Retention time.Duration
	// Number, when set, is the phone number the message went to: it is
	// indexed (as a digest) to its debtor, so an SMS reply from that number
	// finds whom to opt out.
	Number string
}

// ErrLeaseLost is returned by Finish when another worker took the intent over.
var ErrLeaseLost = errors.New("store: lease lost")

// Finish runs lua/finish.lua and returns the new entry's seq.
func (s *Store) Finish(ctx context.Context, r FinishRequest) (int64, error) {
	seqs, err := s.FinishBatch(ctx, []FinishRequest{r})
	if err != nil {
		return 0, err
	}
	switch seqs[0] {
	case 0:
		return 0, ErrLeaseLost
	case -1:
		return 0, ErrStateLost
	}
	return seqs[0], nil
}

// FinishBatch records several outcomes in one pipeline (with the number
// index where asked): one round trip. A seq of 0 means that lease was lost
// (another worker took the intent over; nothing changed for it); -1 that the
// record is gone (Redis lost its data). An error
// means some may have been recorded and some not.
func (s *Store) FinishBatch(ctx context.Context, rs []FinishRequest) ([]int64, error) {
	keys := make([][]string, len(rs))
	args := make([][]any, len(rs))
	for i, r := range rs {
		if r.Entry.State == "" {
			r.Entry.State = r.State
		}
		entry, err := encodeEntry(r.Entry)
		if err != nil {
			return nil, err
		}
		keys[i] = []string{s.keys.Record(r.DebtorID, r.ID)}
		release := "0"
		if len(r.Release) > 0 {
			release = "1"
			for _, st := range debtorStreams(r.Release) {
				keys[i] = append(keys[i], s.keys.Stream(r.DebtorID, st))
			}
		}
		args[i] = []any{r.Owner, ms(r.Now), s.ttlSec, string(r.State), r.Reason, r.Channel, entry, release, r.ID, r.Entry.ProviderID}
	}
	cmds := make([]*redis.Cmd, len(rs))
	run := allTrue(len(rs))
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		for i, r := range rs {
			if !run[i] {
				continue
			}
			cmds[i] = s.finish.EvalSha(ctx, pipe, keys[i], args[i]...)
			if r.Number != "" {
				k := s.keys.Number(r.Number)
				pipe.SAdd(ctx, k, r.DebtorID)
				pipe.Expire(ctx, k, numberTTL)
			}
		}
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 {
			// Only the outcomes whose server lacked the script run again.
			if again := noScript(cmds, run); again != nil {
				if err := s.finish.Load(ctx, s.rdb).Err(); err != nil {
					return nil, fmt.Errorf("store: finish: %w", err)
				}
				run = again
				continue
			}
		}
		if err == nil {
			err = firstErr(cmds) // one of an earlier attempt's
		}
		if err != nil {
			return nil, fmt.Errorf("store: finish: %w", err)
		}
		out := make([]int64, len(rs))
		var lost []Contact
		for i, c := range cmds {
			v, err := replyList(c.Val(), 3)
			if err != nil {
				return nil, fmt.Errorf("store: finish: %w", err)
			}
			switch asString(v[0]) {
			case "ok":
				out[i] = asInt(v[2])
			case "gone":
				out[i] = -1
				if r := rs[i]; len(r.Release) == 0 && len(r.CountIn) > 0 && r.Retention > 0 {
					lost = append(lost, Contact{DebtorID: r.DebtorID, Member: r.ID, At: r.Now, Streams: r.CountIn})
				}
			}
		}
		if err := s.releaseNumbers(ctx, rs, out); err != nil {
			return nil, err
		}
		if len(lost) > 0 {
			// Later than the claim: the contact counts a little longer
			// than it did (conservative), never less.
			if _, err := s.ApplyContacts(ctx, lost, rs[0].Now, maxRetention(rs)); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}

// Accept creates the record of an intent taken in over HTTP. When the intent
// was known already, its record is left as it is: created is false and state
// is the record's.
func (s *Store) Accept(ctx context.Context, id, debtorID, template string, e status.Entry) (created bool, state status.State, err error) {
	if err := s.Bind(ctx, id, debtorID); err != nil {
		return false, "", err
	}
	entry, err := encodeEntry(e)
	if err != nil {
		return false, "", err
	}
	res, err := s.runIndexed(ctx, s.accept, debtorID, id,
		[]any{id, debtorID, ms(e.At), s.ttlSec, template, entry})
	if err != nil {
		return false, "", fmt.Errorf("store: accept: %w", err)
	}
	v, err := replyList(res, 3)
	if err != nil {
		return false, "", fmt.Errorf("store: accept: %w", err)
	}
	return asString(v[0]) == "accepted", status.State(asString(v[1])), nil
}

// Get returns the record of intent id.
func (s *Store) Get(ctx context.Context, id string) (status.Record, error) {
	debtor, err := s.rdb.Get(ctx, s.keys.Index(id)).Result()
	if errors.Is(err, redis.Nil) {
		return status.Record{}, ErrNotFound
	}
	if err != nil {
		return status.Record{}, fmt.Errorf("store: get: %w", err)
	}
	return s.GetFor(ctx, debtor, id)
}

// GetFor returns the record of intent id of debtor debtorID.
func (s *Store) GetFor(ctx context.Context, debtorID, id string) (status.Record, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.Record(debtorID, id)).Result()
	if err != nil {
		return status.Record{}, fmt.Errorf("store: get: %w", err)
	}
	if len(h) == 0 {
		return status.Record{}, ErrNotFound
	}
	return decodeRecord(h)
}

func decodeRecord(h map[string]string) (status.Record, error) {
	r := status.Record{
		ID:        h["id"],
		DebtorID:  h["debtor"],
		State:     status.State(h["state"]),
		Reason:    h["reason"],
		Channel:   h["channel"],
		Template:  h["template"],
		CreatedAt: fromMS(h["created"]),
		UpdatedAt: fromMS(h["updated"]),
	}
	for k, v := range h {
		n, ok := strings.CutPrefix(k, "e:")
		if !ok {
			continue
		}
		seq, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			continue
		}
		var e status.Entry
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return status.Record{}, fmt.Errorf("store: entry %d of %s: %w", seq, r.ID, err)
		}
		e.Seq = seq
		if e.UntilMS != 0 {
			u := time.UnixMilli(e.UntilMS).UTC()
			e.Until, e.UntilMS = &u, 0
		}
		e.Inputs.Explain()
		r.Timeline = append(r.Timeline, e)
	}
	sort.Slice(r.Timeline, func(i, j int) bool { return r.Timeline[i].Seq < r.Timeline[j].Seq })
	return r, nil
}

// runIndexed runs a script on the debtor's record and, in the same pipeline,
// writes the id → debtor index.
func (s *Store) runIndexed(ctx context.Context, sc *redis.Script, debtorID, id string, args []any) (any, error) {
	return s.evalIndexed(ctx, sc, []string{s.keys.Record(debtorID, id)}, debtorID, id, args)
}

// evalIndexed runs a script with keys and, in the same pipeline, writes the
// id → debtor index: one round trip (on a cluster, one per node involved).
// A script Redis lost (restart, flush) is loaded and the call repeated.
func (s *Store) evalIndexed(ctx context.Context, sc *redis.Script, keys []string, debtorID, id string, args []any) (any, error) {
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		res := sc.EvalSha(ctx, pipe, keys, args...)
		pipe.SetArgs(ctx, s.keys.Index(id), debtorID, redis.SetArgs{TTL: s.ttl})
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 && isNoScript(res.Err()) {
			if err := sc.Load(ctx, s.rdb).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err := res.Err(); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		return res.Val(), nil
	}
}

// numberTTL: how long an SMS reply from a number can be traced to its
// debtors after the last message to it.
const numberTTL = 400 * 24 * time.Hour

// Number is the set of debtors messaged at a phone number (its keyed
// digest).
func (k Keys) Number(phone string) string { return k.numberKey(k.AddressDigest(phone)) }

func (k Keys) numberKey(digest string) string { return k.Prefix + "number:" + digest }

// DebtorsAt returns the debtors messaged at phone.
func (s *Store) DebtorsAt(ctx context.Context, phone string) ([]string, error) {
	return s.rdb.SMembers(ctx, s.keys.Number(phone)).Result()
}

// run runs a script, loading it first if Redis lost it (restart, flush).
func (s *Store) run(ctx context.Context, sc *redis.Script, keys []string, args []any) (any, error) {
	return sc.Run(ctx, s.rdb, keys, args...).Result()
}

// noScript lists the commands that ran (run) and found their script
// missing, or nil if none did.
func noScript(cmds []*redis.Cmd, run []bool) []bool {
	var again []bool
	for i, c := range cmds {
		if run[i] && c != nil && isNoScript(c.Err()) {
			if again == nil {
				again = make([]bool, len(cmds))
			}
			again[i] = true
		}
	}
	return again
}

// allTrue is n trues: every command of a pipeline runs.
func allTrue(n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = true
	}
	return out
}

// orNone is run, or n falses when run is nil (noScript found none).
func orNone(run []bool, n int) []bool {
	if run == nil {
		return make([]bool, n)
	}
	return run
}

// firstErr is the first error among cmds.
func firstErr(cmds []*redis.Cmd) error {
	for _, c := range cmds {
		if c != nil && c.Err() != nil {
			return c.Err()
		}
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func encodeEntry(e status.Entry) (string, error) {
	e.Seq = 0
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("store: entry: %w", err)
	}
	return string(b), nil
}

func replyList(res any, n int) ([]any, error) {
	v, ok := res.([]any)
	if !ok || len(v) < n {
		return nil, fmt.Errorf("unexpected reply %v", res)
	}
	return v, nil
}

func asString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}

func asInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case string:
		n, _ := strconv.ParseInt(x, 10, 64)
		return n
	}
	return 0
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

func maxRetention(rs []FinishRequest) time.Duration {
	var d time.Duration
	for _, r := range rs {
		d = max(d, r.Retention)
	}
	return d
}
