package kafkaio

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// Replay reads every record of topic, partition by partition, from the
// first offset to the end each partition had when Replay started, and hands
// them to fn in batches of up to batch records. It is how hot state is
// rebuilt from the topics that hold it durably. It returns how many records
// it read and each partition's end offset, where a reader that follows the
// topic goes on.
func (c *Client) Replay(ctx context.Context, brokers []string, topic string, batch int, fn func([]kafka.Message) error) (int, map[int]int64, error) {
	ends := map[int]int64{}
	n, err := c.replay(ctx, brokers, topic, batch, fn, nil, ends)
	return n, ends, err
}

// ReplayFrom is Replay starting each partition at the offset from gives it
// (an earlier Replay's ends): the records published since.
func (c *Client) ReplayFrom(ctx context.Context, brokers []string, topic string, from map[int]int64, batch int, fn func([]kafka.Message) error) (int, map[int]int64, error) {
	ends := map[int]int64{}
	n, err := c.replay(ctx, brokers, topic, batch, fn, from, ends)
	return n, ends, err
}

func (c *Client) replay(ctx context.Context, brokers []string, topic string, batch int, fn func([]kafka.Message) error, from, ends map[int]int64) (int, error) {
	md, err := c.c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return 0, fmt.Errorf("replay %s: topic not found", topic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := c.c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("replay %s: list offsets: %w", topic, err)
	}
	total := 0
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return total, fmt.Errorf("replay %s/%d: %w", topic, po.Partition, po.Error)
		}
		ends[po.Partition] = po.LastOffset
		if f, ok := from[po.Partition]; ok && f > po.FirstOffset {
			po.FirstOffset = f
		}
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		n, err := replayPartition(ctx, brokers, topic, po.Partition, po.FirstOffset, po.LastOffset, batch, fn)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func replayPartition(ctx context.Context, brokers []string, topic string, part int, first, end int64, batch int, fn func([]kafka.Message) error) (int, error) {
	var conn *kafka.Conn
	var err error
	for _, b := range brokers {
		if conn, err = kafka.DialLeader(ctx, "tcp", b, topic, part); err == nil {
			break
		}
	}
	if err != nil {
		return 0, fmt.Errorf("replay %s/%d: %w", topic, part, err)
	}
	defer conn.Close()
	buf := make([]kafka.Message, 0, batch)
	n, next := 0, first
	for next < end {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if _, err := conn.Seek(next, kafka.SeekAbsolute); err != nil {
			return n, fmt.Errorf("replay %s/%d: seek %d: %w", topic, part, next, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 500 * time.Millisecond})
		read := 0
		for {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			read++
			next = m.Offset + 1
			if m.Offset >= end {
				break
			}
			buf = append(buf, m)
			n++
			if len(buf) == batch {
				if err := fn(buf); err != nil {
					b.Close()
					return n, err
				}
				buf = buf[:0]
			}
		}
		if err := b.Close(); err != nil && read == 0 {
			return n, fmt.Errorf("replay %s/%d at %d: %w", topic, part, next, err)
		}
		if read == 0 {
			// Nothing left below end (records removed by compaction or
			// aborted transactions): the partition is read.
			break
		}
	}
	if len(buf) > 0 {
		if err := fn(buf); err != nil {
			return n, err
		}
	}
	return n, nil
}
