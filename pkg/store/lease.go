package store

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed lua/lease.lua
var leaseLua string

var leaseScript = redis.NewScript(leaseLua)

// releaseScript deletes a lease only if owner still holds it.
var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Lease is the key of a named lease.
func (k Keys) Lease(name string) string { return k.Prefix + "lease:" + name }

// HoldLease takes the named lease for owner, or keeps it if owner holds it.
func (s *Store) HoldLease(ctx context.Context, name, owner string, d time.Duration) (bool, error) {
	n, err := leaseScript.Run(ctx, s.rdb, []string{s.keys.Lease(name)}, owner, d.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("store: lease %s: %w", name, err)
	}
	return n == 1, nil
}

// ReleaseLease gives the lease up if owner holds it.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	return releaseScript.Run(ctx, s.rdb, []string{s.keys.Lease(name)}, owner).Err()
}
