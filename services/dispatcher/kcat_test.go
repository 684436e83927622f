package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/pkg/status"
	"github.com/contactd/dispatcher/pkg/testenv"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// TestKcat: an intent written by another Kafka client, kcat (librdkafka),
// is handled exactly like one from `dispatcher produce`, and the status
// events can be read back with kcat.
func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		testenv.Missing(t, "kcat (Debian package kcat)")
	}
	h := newHarness(t, 12)
	svc := h.start(Roles{Worker: true, API: true, Dev: true})
	in := sample.New(3, 10, time.Now()).Next()

	// murmur2 partitioning, as the dispatcher's own producers use, keeps a
	// debtor's intents on one partition whichever client wrote them.
	cmd := exec.Command(kcat, "-P", "-b", strings.Join(h.brokers, ","), "-t", kafkaio.DefaultTopics.Intents,
		"-X", "partitioner=murmur2_random", "-K", "\t")
	cmd.Stdin = strings.NewReader(in.DebtorID + "\t" + string(mustJSON(t, in)) + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
	testenv.Eventually(t, 30*time.Second, "the kcat intent sent", func() bool {
		var rec status.Record
		return getJSON(t, svc.base+"/v1/intents/"+in.ID, &rec) == 200 && rec.State == status.Sent
	})
	if n := svc.Sandbox.Counts()[in.ID]; n != 1 {
		t.Errorf("sent %d times, want 1", n)
	}

	out, err := exec.Command(kcat, "-C", "-b", strings.Join(h.brokers, ","), "-t", kafkaio.DefaultTopics.Status,
		"-o", "beginning", "-e", "-q", "-f", "%k %s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(in.ID+` {"kind":"transition","id":"`+in.ID)) || !bytes.Contains(out, []byte(`"state":"sent"`)) {
		t.Errorf("kcat did not read the intent's status events:\n%s", out)
	}
}
