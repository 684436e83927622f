package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/httpapi"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// devProcess is `dispatcher dev` running as its own process.
type devProcess struct {
	cmd *exec.Cmd
	api string
}

func startDev(t *testing.T, dataDir string, kafkaPort int, journal string) *devProcess {
	t.Helper()
	return startDevWith(t, dataDir, kafkaPort, journal, openProfile(t))
}

// startDevWith is startDev under the policy profile file profile.
func startDevWith(t *testing.T, dataDir string, kafkaPort int, journal, profile string) *devProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "dev", "--data-dir", dataDir, "--kafka-port", strconv.Itoa(kafkaPort))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_URL=") && !strings.HasPrefix(kv, "DISPATCHER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DISPATCHER_BE_MAIN=1", "DISPATCHER_HTTP_ADDR=127.0.0.1:0",
		"DISPATCHER_SANDBOX_JOURNAL="+journal, "DISPATCHER_LOG_LEVEL=warn", "DISPATCHER_PROFILE="+profile,
		"DISPATCHER_API_KEYS=admin:"+httpapi.HashAPIKey(testAPIKey))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "api" {
				found <- f[1]
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case api := <-found:
		return &devProcess{cmd: cmd, api: api}
	case <-time.After(60 * time.Second):
		t.Fatal("dispatcher dev did not print its API address within 60s")
	}
	return nil
}

func (d *devProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	err := d.cmd.Wait()
	if sig == syscall.SIGTERM && err != nil {
		t.Fatalf("dev exited with %v after SIGTERM", err)
	}
}

// TestDevRestartKeepsEverything: `dispatcher dev` with its embedded broker
// and in-process Redis, stopped (gracefully, then killed) and started again
// on the same data dir, still knows every intent it decided and sends none
// of them again.
func TestDevRestartKeepsEverything(t *testing.T) {
	dataDir, journal, port := t.TempDir(), t.TempDir()+"/journal", freePort(t)
	brokers := []string{"127.0.0.1:" + strconv.Itoa(port)}
	g := sample.New(5, 50, time.Now())
	var first []intent.Intent
	for i := 0; i < 200; i++ {
		first = append(first, g.Next())
	}
	produce := func(ins []intent.Intent) {
		t.Helper()
		w := kafkaio.NewWriter(brokers)
		defer w.Close()
		var msgs []kafka.Message
		for _, in := range ins {
			msgs = append(msgs, kafka.Message{Topic: kafkaio.DefaultTopics.Intents, Key: []byte(in.DebtorID), Value: mustJSON(t, in)})
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
	}
	sentOnce := func(ins []intent.Intent) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, "all intents sent", func() bool {
			sends, _ := journalCounts(t, journal)
			for _, in := range ins {
				if sends[in.ID] == 0 {
					return false
				}
			}
			return true
		})
	}
	h := &harness{t: t, brokers: brokers}

	d := startDev(t, dataDir, port, journal)
	produce(first)
	sentOnce(first)
	testenv.Eventually(t, 30*time.Second, "offsets committed", h.allCommitted)
	d.stop(t, syscall.SIGTERM)

	// Graceful restart: records are back (rebuilt from reminders.status);
	// the same intents again are recognised as duplicates.
	d = startDev(t, dataDir, port, journal)
	var rec status.Record
	if code := getJSON(t, d.api+"/v1/intents/"+first[0].ID, &rec); code != 200 || rec.State != status.Sent {
		t.Fatalf("after restart GET %s: HTTP %d state %q, want sent", first[0].ID, code, rec.State)
	}
	produce(first)
	testenv.Eventually(t, 30*time.Second, "redeliveries committed", h.allCommitted)
	d.stop(t, syscall.SIGKILL)

	// Killed: the next start still has everything; new intents go out.
	d = startDev(t, dataDir, port, journal)
	more := []intent.Intent{g.Next(), g.Next(), g.Next()}
	produce(more)
	sentOnce(more)
	testenv.Eventually(t, 30*time.Second, "offsets committed", h.allCommitted)
	for _, in := range append(first[:3:3], more...) {
		if code := getJSON(t, d.api+"/v1/intents/"+in.ID, &rec); code != 200 || rec.State != status.Sent {
			t.Errorf("GET %s: HTTP %d state %q, want sent", in.ID, code, rec.State)
		}
	}
	sends, repeats := journalCounts(t, journal)
	for _, in := range append(first, more...) {
		if sends[in.ID] != 1 {
			t.Errorf("intent %s sent %d times, want 1", in.ID, sends[in.ID])
		}
	}
	var outbox struct {
		Entries []json.RawMessage `json:"entries"`
	}
	getJSON(t, d.api+"/v1/sandbox/outbox", &outbox)
	t.Logf("sent %d distinct, %d repeats answered; outbox after the last start lists %d", len(sends), repeats, len(outbox.Entries))
	d.stop(t, syscall.SIGTERM)
}
