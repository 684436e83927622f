package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// CheckState is how a frequency check stands now.
type CheckState struct {
	Count  int
	FreeAt time.Time // when the check passes again; zero if it passes now
}

// Counters evaluates checks against the debtor's streams without changing
// anything (for the contacts view): one pipeline.
func (s *Store) Counters(ctx context.Context, debtorID string, checks []Check) ([]CheckState, error) {
	if len(checks) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	counts := make([]*redis.IntCmd, len(checks))
	firsts := make([]*redis.ZSliceCmd, len(checks))
	for i, c := range checks {
		key := s.keys.Stream(debtorID, c.Stream)
		min := fmt.Sprint(c.Since.UnixMilli())
		counts[i] = pipe.ZCount(ctx, key, min, "+inf")
		firsts[i] = pipe.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: min, Max: "+inf"})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: counters: %w", err)
	}
	out := make([]CheckState, len(checks))
	for i, c := range checks {
		n := int(counts[i].Val())
		out[i].Count = n
		if n < c.Limit {
			continue
		}
		if c.Sliding > 0 {
			zs := firsts[i].Val()
			if k := n - c.Limit; k < len(zs) {
				out[i].FreeAt = time.UnixMilli(int64(zs[k].Score) + 1).Add(c.Sliding).UTC()
			}
		} else {
			out[i].FreeAt = c.Until.UTC()
		}
	}
	return out, nil
}

// Event is one entry of a stream.
type Event struct {
	IntentID string
	At       time.Time
}

// Recent returns the newest events of a stream at or after since, newest
// first, at most limit.
func (s *Store) Recent(ctx context.Context, debtorID string, st Stream, since time.Time, limit int) ([]Event, error) {
	zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, s.keys.Stream(debtorID, st), &redis.ZRangeBy{
		Min: fmt.Sprint(since.UnixMilli()), Max: "+inf", Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("store: recent: %w", err)
	}
	out := make([]Event, 0, len(zs))
	for _, z := range zs {
		id, _ := z.Member.(string)
		out = append(out, Event{IntentID: id, At: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// RecordEvent adds an event to a stream (a reported conversation, a
// connected call), kept for retention: events older than retention before
// at are trimmed. The stream's clock is the time it is handed, never the
// wall clock, so a caller's clock decides what is still in a window.
func (s *Store) RecordEvent(ctx context.Context, debtorID string, st Stream, member string, at time.Time, retention time.Duration) error {
	key := s.keys.Stream(debtorID, st)
	pipe := s.rdb.TxPipeline()
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: member})
	pipe.ZRemRangeByScore(ctx, key, "-inf", fmt.Sprint(at.Add(-retention).UnixMilli()))
	pipe.PExpire(ctx, key, retention)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: record event: %w", err)
	}
	return nil
}
