// Package kafkaio owns the dispatcher's Kafka topics: their names and
// settings, creating or checking them, and the reader and writer settings
// every process uses (consumer group, murmur2 key partitioning, acks=all).
package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topics names the dispatcher's topics.
type Topics struct {
	Intents  string // reminder intents, key = debtor_id
	DLQ      string // rejected input: original bytes + reason header
	Status   string // status events, key = intent id
	Deferred string // compacted; key = intent id; intents waiting for their time
	OptOuts  string // compacted; key = debtor_id/channel
	Control  string // upstream commands (cancel, hold, release), key = debtor_id
}

// DefaultTopics are the names in the design.
var DefaultTopics = Topics{
	Intents:  "reminders.intents",
	DLQ:      "reminders.dlq",
	Status:   "reminders.status",
	Deferred: "reminders.deferred",
	OptOuts:  "reminders.optouts",
	Control:  "reminders.control",
}

// All lists the topic names.
func (t Topics) All() []string {
	return []string{t.Intents, t.DLQ, t.Status, t.Deferred, t.OptOuts, t.Control}
}

// Specs returns how the topics are created: intents, status and the
// compacted topics with the given partition count, the DLQ and the control
// topic with 3.
func (t Topics) Specs(partitions, replication int) []kafka.TopicConfig {
	compact := []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
	return []kafka.TopicConfig{
		{Topic: t.Intents, NumPartitions: partitions, ReplicationFactor: replication},
		{Topic: t.DLQ, NumPartitions: 3, ReplicationFactor: replication},
		{Topic: t.Status, NumPartitions: partitions, ReplicationFactor: replication},
		{Topic: t.Deferred, NumPartitions: partitions, ReplicationFactor: replication, ConfigEntries: compact},
		{Topic: t.OptOuts, NumPartitions: partitions, ReplicationFactor: replication, ConfigEntries: compact},
		{Topic: t.Control, NumPartitions: 3, ReplicationFactor: replication},
	}
}

// Headers on DLQ records.
const (
	HeaderReason          = "dlq-reason"           // one line: why it was rejected
	HeaderCode            = "dlq-code"             // the first field error's code
	HeaderSourceTopic     = "dlq-source-topic"     // where it came from
	HeaderSourcePartition = "dlq-source-partition" // partition it came from
	HeaderSourceOffset    = "dlq-source-offset"    // offset it had
	HeaderRejectedAt      = "dlq-rejected-at"      // RFC 3339
	HeaderTruncated       = "dlq-truncated"        // the value was cut: its original length in bytes
	HeaderSHA256          = "dlq-value-sha256"     // of the whole original value, when cut
)

// Headers on intents the scheduler re-injects from reminders.deferred.
const (
	HeaderReinjected = "dispatcher-reinjected" // the deferred transition's seq
	HeaderDue        = "dispatcher-due"        // RFC 3339: when it was due
	HeaderRetries    = "dispatcher-retries"    // failed sends retried so far
)

// Client talks to the cluster for admin and health checks.
type Client struct {
	c *kafka.Client
}

// NewClient returns a Client for the given bootstrap brokers.
func NewClient(brokers []string) *Client {
	return &Client{c: &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}}
}

// Ping checks that a broker answers a metadata request.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	return err
}

// Missing returns the topics among names that do not exist.
func (c *Client) Missing(ctx context.Context, names []string) ([]string, error) {
	md, err := c.c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("kafka metadata: %w", err)
	}
	have := map[string]bool{}
	for _, t := range md.Topics {
		if t.Error == nil {
			have[t.Name] = true
		}
	}
	var missing []string
	for _, n := range names {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// Ensure creates the topics that do not exist yet.
func (c *Client) Ensure(ctx context.Context, specs []kafka.TopicConfig) error {
	res, err := c.c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: specs})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	return nil
}

// Partitions returns the number of partitions of topic.
func (c *Client) Partitions(ctx context.Context, topic string) (int, error) {
	md, err := c.c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, t.Error
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("topic %s not found", topic)
}

// NewWriter returns a writer for any of the topics (each message names its
// topic). Keys are partitioned with murmur2 like the Java client's default,
// so the same debtor lands on the same partition whichever producer wrote it.
// Writes wait for acks from all in-sync replicas.
func NewWriter(brokers []string) *kafka.Writer {
	return &kafka.Writer{
		Addr:                   kafka.TCP(brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchTimeout:           2 * time.Millisecond,
		BatchSize:              500,
		WriteTimeout:           10 * time.Second,
		MaxAttempts:            10,
		AllowAutoTopicCreation: false,
	}
}

// ReaderConfig returns the consumer-group reader settings for topic.
func ReaderConfig(brokers []string, group, topic string) kafka.ReaderConfig {
	return kafka.ReaderConfig{
		Brokers:        brokers,
		GroupID:        group,
		Topic:          topic,
		MinBytes:       1,
		MaxBytes:       4 << 20,
		MaxWait:        250 * time.Millisecond,
		QueueCapacity:  1000,
		CommitInterval: 200 * time.Millisecond,
		StartOffset:    kafka.FirstOffset,
		// A worker that stops heartbeating (killed) loses its partitions
		// after this long.
		SessionTimeout:    10 * time.Second,
		HeartbeatInterval: time.Second,
		RebalanceTimeout:  10 * time.Second,
		// Partitions are read on several goroutines; see worker.
		ReadBatchTimeout:      5 * time.Second,
		WatchPartitionChanges: true,
	}
}

// Header returns the value of header k of m.
func Header(m kafka.Message, k string) string {
	for _, h := range m.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// SourceHeaders are the DLQ headers telling where m came from.
func SourceHeaders(m kafka.Message) []kafka.Header {
	return []kafka.Header{
		{Key: HeaderSourceTopic, Value: []byte(m.Topic)},
		{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(m.Partition))},
		{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
	}
}

// HostPort joins a host and port for broker addresses.
func HostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// Lag returns, per partition of topic, how many records the group has not
// committed yet.
func (c *Client) Lag(ctx context.Context, group, topic string) (map[int]int64, error) {
	md, err := c.c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return nil, fmt.Errorf("lag: metadata: %v", err)
	}
	var parts []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		parts = append(parts, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	ends, err := c.c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("lag: list offsets: %w", err)
	}
	got, err := c.c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("lag: offset fetch: %w", err)
	}
	committed := map[int]int64{}
	for _, p := range got.Topics[topic] {
		committed[p.Partition] = max(p.CommittedOffset, 0)
	}
	out := map[int]int64{}
	for _, p := range ends.Topics[topic] {
		out[p.Partition] = max(p.LastOffset-committed[p.Partition], 0)
	}
	return out, nil
}
