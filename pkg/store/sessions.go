package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Session is the key of one ops page session, by the digest of its id (so
// the keys in Redis do not hand out live session ids).
func (k Keys) Session(digest string) string { return k.Prefix + "session:" + digest }

// PutSession stores a session's value for ttl (a relative expiry: the
// holder checks its own expiry time against its clock too).
func (s *Store) PutSession(ctx context.Context, digest string, value []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.keys.Session(digest), value, ttl).Err(); err != nil {
		return fmt.Errorf("store: session: %w", err)
	}
	return nil
}

// Session returns a session's value, or ErrNotFound.
func (s *Store) Session(ctx context.Context, digest string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.Session(digest)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: session: %w", err)
	}
	return b, nil
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(ctx context.Context, digest string) error {
	if err := s.rdb.Del(ctx, s.keys.Session(digest)).Err(); err != nil {
		return fmt.Errorf("store: session: %w", err)
	}
	return nil
}
