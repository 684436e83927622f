package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/contactd/dispatcher/pkg/kafkaio"
)

// runBroker runs the embedded Kafka protocol broker on its own, with the
// dispatcher's topics: for trying other clients against it, and for tests
// that kill and restart the broker apart from the workers.
func runBroker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 9092, "port on 127.0.0.1")
	dataDir := fs.String("data-dir", ".dispatcher-data/kafka", "where it keeps its data")
	sync := fs.Bool("sync-writes", false, "fsync every produce (survives a machine crash, slower)")
	partitions := fs.Int("partitions", 12, "partitions of the keyed topics")
	minSession := fs.Duration("min-session-timeout", 0, "smallest consumer session timeout it accepts (default Kafka's 6s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return err
	}
	opts := []kfake.Opt{kfake.Ports(*port), kfake.DataDir(*dataDir), kfake.DefaultNumPartitions(*partitions)}
	if *sync {
		opts = append(opts, kfake.SyncWrites())
	}
	if *minSession > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(*minSession))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("broker on 127.0.0.1:%d: %w", *port, err)
	}
	defer c.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkaio.NewClient(c.ListenAddrs()).Ensure(tctx, kafkaio.DefaultTopics.Specs(*partitions, 1)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "broker %s (data in %s)\n", c.ListenAddrs()[0], *dataDir)
	<-ctx.Done()
	return nil
}
