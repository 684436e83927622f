package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster returns the addresses of a Redis Cluster with 3 masters:
// DISPATCHER_TEST_REDIS_CLUSTER (comma-separated host:port), else one it
// starts on loopback from the redis-server and redis-cli binaries and stops
// at the end of the test.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	if v := os.Getenv("DISPATCHER_TEST_REDIS_CLUSTER"); v != "" {
		addrs := strings.Split(v, ",")
		waitCluster(t, addrs)
		return addrs
	}
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		Missing(t, "redis-server and redis-cli (Debian package redis-server) to start a Redis Cluster")
	}
	dir := t.TempDir()
	var addrs []string
	for i := 0; i < 3; i++ {
		port := freePort(t)
		addr := "127.0.0.1:" + strconv.Itoa(port)
		nd := filepath.Join(dir, strconv.Itoa(port))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(nd, "nodes.conf"), "--dir", nd, "--save", "", "--appendonly", "no",
			"--logfile", filepath.Join(nd, "log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addrs = append(addrs, addr)
	}
	for _, a := range addrs {
		waitPing(t, a)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitCluster(t, addrs)
	return addrs
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitPing(t testing.TB, addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis at %s did not start", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitCluster(t testing.TB, addrs []string) {
	c := redis.NewClient(&redis.Options{Addr: addrs[0]})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.ClusterInfo(context.Background()).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return
		}
		if time.Now().After(deadline) {
			Missing(t, fmt.Sprintf("a Redis Cluster at %v in state ok (%v)", addrs, err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
