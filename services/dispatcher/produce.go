package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/services/dispatcher/internal/sample"
)

// runProduce writes sample intents to reminders.intents.
func runProduce(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 100, "how many intents to write")
	debtors := fs.Int("debtors", 1000, "how many distinct debtors they are for")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (the same seed gives the same intents, ids included)")
	brokers := fs.String("brokers", "", "comma-separated brokers (default DISPATCHER_KAFKA_BROKERS, else 127.0.0.1:9092)")
	topic := fs.String("topic", kafkaio.DefaultTopics.Intents, "topic to write to")
	print := fs.Bool("print", false, "also print each intent as one JSON line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	list := *brokers
	if list == "" {
		list = getenv("DISPATCHER_KAFKA_BROKERS")
	}
	if list == "" {
		list = "127.0.0.1:9092"
	}
	w := kafkaio.NewWriter(strings.Split(list, ","))
	defer w.Close()
	g := sample.New(*seed, *debtors, time.Now())
	const batch = 500
	var first, last string
	msgs := make([]kafka.Message, 0, batch)
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("write to %s at %s: %w", *topic, list, err)
		}
		msgs = msgs[:0]
		return nil
	}
	for i := 0; i < *count; i++ {
		in := g.Next()
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		if *print {
			fmt.Fprintln(stdout, string(b))
		}
		if first == "" {
			first = in.ID
		}
		last = in.ID
		msgs = append(msgs, kafka.Message{Topic: *topic, Key: []byte(in.DebtorID), Value: b})
		if len(msgs) == batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %d intents to %s at %s (first id %s, last id %s)\n", *count, *topic, list, first, last)
	return nil
}
