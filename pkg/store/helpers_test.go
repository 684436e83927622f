package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// onEachRedis runs f on one real Redis server and on a 3-master Redis
// Cluster, where a debtor's keys, an id's index and the state marker fall
// in different slots.
func onEachRedis(t *testing.T, f func(t *testing.T, rdb redis.UniversalClient, prefix string)) {
	t.Run("redis", func(t *testing.T) {
		c, p := testenv.Redis(t)
		f(t, c, p)
	})
	t.Run("redis cluster", func(t *testing.T) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.RedisCluster(t)})
		t.Cleanup(func() { c.Close() })
		f(t, c, testenv.Prefix(t))
	})
}

// newStore is a Store on rdb whose state is marked rebuilt at now.
func newStore(t *testing.T, rdb redis.UniversalClient, prefix string, now time.Time) *store.Store {
	t.Helper()
	st, err := store.New(rdb, store.Config{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.MarkRebuilt(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	return st
}
