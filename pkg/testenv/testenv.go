// Package testenv finds or starts the real components the tests run against:
// a Redis server and an in-process Kafka protocol broker (kfake). Under
// CI=true a missing Redis fails the test instead of skipping it, so a CI run
// can never pass without having exercised the real thing.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/contactd/dispatcher/pkg/kafkaio"
)

// CI reports whether the tests run in CI, where nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" || os.Getenv("CI") == "1" }

// Missing skips the test outside CI and fails it in CI.
func Missing(t testing.TB, what string) {
	t.Helper()
	if CI() {
		t.Fatalf("%s is required under CI=true and is missing", what)
	}
	t.Skipf("%s is missing; set it up or run under CI=true to make this a failure", what)
}

// RedisURL returns the URL of a real Redis server: DISPATCHER_TEST_REDIS_URL,
// else redis://127.0.0.1:6379 if it answers.
func RedisURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("DISPATCHER_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379"
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("DISPATCHER_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		Missing(t, "a Redis server at "+url+" ("+err.Error()+")")
	}
	return url
}

// Redis returns a client of the real Redis server and a key prefix unique to
// this test; the test's keys are deleted at the end.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	o, _ := redis.ParseURL(RedisURL(t))
	c := redis.NewClient(o)
	c.AddHook(clockHook{t})
	prefix := Prefix(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, "*"+strings.TrimSuffix(prefix, ":")+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			c.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
		c.Close()
	})
	return c, prefix
}

// Prefix returns a Redis key prefix no other test uses.
func Prefix(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:]) + ":"
}

// Kafka starts an in-process broker on a free port with the dispatcher's
// topics created, and stops it at the end of the test.
func Kafka(t testing.TB, partitions int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := kafkaio.NewClient(c.ListenAddrs()).Ensure(ctx, kafkaio.DefaultTopics.Specs(partitions, 1)); err != nil {
		t.Fatalf("create topics: %v", err)
	}
	return c
}

// Eventually polls cond every 50ms until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
