package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/bind.lua
var bindLua string

var bindScript = redis.NewScript(bindLua)

// Conflict is the outcome of a gate or claim for an intent id already
// bound to another debtor: nothing was decided or written.
const Conflict Outcome = "conflict"

// ErrIDConflict says an intent id is bound to another debtor.
var ErrIDConflict = errors.New("store: the intent id belongs to another debtor")

// Bind binds intent id to debtorID the first time it is seen (durably: the
// status events the decisions publish rebuild the binding after a Redis
// loss) and returns ErrIDConflict if it is bound to another debtor. Every
// path that records a decision under a debtor binds first, so an id is
// decided, sent and shown for one debtor only.
func (s *Store) Bind(ctx context.Context, id, debtorID string) error {
	owner, err := bindScript.Run(ctx, s.rdb, []string{s.keys.Index(id)}, debtorID, s.ttl.Milliseconds()).Text()
	if err != nil {
		return fmt.Errorf("store: bind: %w", err)
	}
	if owner != debtorID {
		return ErrIDConflict
	}
	return nil
}

// boundElsewhere reports, without writing, whether id is bound to a debtor
// other than debtorID.
func (s *Store) boundElsewhere(ctx context.Context, id, debtorID string) (bool, error) {
	owner, err := s.rdb.Get(ctx, s.keys.Index(id)).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: bind: %w", err)
	}
	return owner != debtorID, nil
}

// bindReserve binds every request's id to its debtor and runs the number
// calls given (number.lua), all in one pipeline, and reports per request
// whether the id is its debtor's. A script Redis does not know (a
// restarted server) is loaded and only the commands that found it missing
// run again: a reservation is never made twice.
func (s *Store) bindReserve(ctx context.Context, rs []GateRequest, calls []*numberCall) ([]bool, error) {
	binds := make([]*redis.Cmd, len(rs))
	nums := make([]*redis.Cmd, len(calls))
	run, runNum := allTrue(len(rs)), allTrue(len(calls))
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		for i, r := range rs {
			if run[i] {
				binds[i] = bindScript.EvalSha(ctx, pipe, []string{s.keys.Index(r.ID)}, r.DebtorID, s.ttl.Milliseconds())
			}
		}
		for i, n := range calls {
			if runNum[i] {
				nums[i] = numberScript.EvalSha(ctx, pipe, n.keys, n.args...)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && attempt == 0 {
			again, againNum := noScript(binds, run), noScript(nums, runNum)
			if again != nil || againNum != nil {
				for _, sc := range []*redis.Script{bindScript, numberScript} {
					if err := sc.Load(ctx, s.rdb).Err(); err != nil {
						return nil, fmt.Errorf("store: bind: %w", err)
					}
				}
				run, runNum = orNone(again, len(rs)), orNone(againNum, len(calls))
				continue
			}
		}
		out := make([]bool, len(rs))
		for i, c := range binds {
			owner, err := c.Text()
			if err != nil {
				return nil, fmt.Errorf("store: bind: %w", err)
			}
			out[i] = owner == rs[i].DebtorID
		}
		for i, c := range nums {
			if c.Err() != nil {
				return nil, fmt.Errorf("store: gate number: %w", c.Err())
			}
			if err := calls[i].parse(c.Val()); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
}
