package main

import (
	"bytes"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/pkg/testenv"
)

// process is a dispatcher started as a separate process (this test binary
// standing in for it; see TestMain).
type process struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func (h *harness) spawn(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), h.env()...)
	p := &process{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

func journalLen(path string) int {
	lines, _ := sandbox.ReadJournal(path)
	return len(lines)
}

// TestRestartKilled: a worker process killed with SIGKILL mid-stream, and a
// new process started → no intent lost, none sent twice. Intents the killed
// worker held mid-send are resolved through the provider's idempotency (the
// sandbox, like WeChat's client_msg_id, recognises a repeated intent id).
func TestRestartKilled(t *testing.T) {
	h := newHarness(t, 12)
	ins := produceSamples(t, h, 3000, 13)

	// Sends take 2ms, so the kill most likely lands while some are in flight.
	h.extraEnv = []string{"DISPATCHER_SANDBOX_LATENCY=2ms"}
	a := h.spawn(t, "worker")
	testenv.Eventually(t, 60*time.Second, "the first worker to send 800", func() bool { return journalLen(h.journal) >= 800 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	killedAt := journalLen(h.journal)
	if killedAt >= len(ins) {
		t.Fatalf("the worker sent everything (%d) before it was killed; the test proves nothing", killedAt)
	}

	b := h.spawn(t, "worker")
	testenv.Eventually(t, 90*time.Second, "every intent committed", h.allCommitted)
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("second worker exited with %v after SIGTERM:\n%s", err, b.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("second worker did not stop within 30s of SIGTERM")
	}
	t.Logf("killed after %d sends", killedAt)

	o, _ := redis.ParseURL(h.redis)
	rdb := redis.NewClient(o)
	defer rdb.Close()
	st, err := store.New(rdb, store.Config{Prefix: h.prefix})
	if err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, h, st, ins)
}
