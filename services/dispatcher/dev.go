package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/contactd/dispatcher/pkg/kafkaio"
	"github.com/contactd/dispatcher/services/dispatcher/internal/httpapi"
)

// runDev runs the whole service in one process with no setup.
func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", ".dispatcher-data", "where the embedded broker keeps its data (a restart keeps every intent, deferral and opt-out)")
	kafkaPort := fs.Int("kafka-port", 9092, "port of the embedded Kafka broker on 127.0.0.1")
	partitions := fs.Int("partitions", 12, "partitions of reminders.intents and the other keyed topics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := configFromEnv(getenv, true)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	var broker *kfake.Cluster
	if len(cfg.Brokers) == 0 {
		if err := os.MkdirAll(*dataDir, 0o755); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		broker, err = kfake.NewCluster(
			kfake.Ports(*kafkaPort),
			kfake.DataDir(filepath.Join(*dataDir, "kafka")),
			kfake.DefaultNumPartitions(*partitions),
		)
		if err != nil {
			return fmt.Errorf("embedded Kafka broker on 127.0.0.1:%d: %w (is another broker or dispatcher dev running? use --kafka-port)", *kafkaPort, err)
		}
		defer broker.Close()
		cfg.Brokers = broker.ListenAddrs()
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkaio.NewClient(cfg.Brokers).Ensure(tctx, kafkaio.DefaultTopics.Specs(*partitions, 1)); err != nil {
		return err
	}

	redisNote := redactURL(cfg.RedisURL)
	if cfg.RedisURL == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("in-process Redis: %w", err)
		}
		defer mr.Close()
		cfg.RedisURL = "redis://" + mr.Addr()
		redisNote = cfg.RedisURL + " (in-process; set DISPATCHER_REDIS_URL for a real Redis)"
	}

	apiKey, err := devSecrets(&cfg, *dataDir)
	if err != nil {
		return err
	}
	if cfg.Twilio.AuthToken == "" {
		log.Warn("DISPATCHER_TWILIO_AUTH_TOKEN is not set: dev mode accepts unsigned Twilio webhooks (production refuses them)")
	}
	s, err := NewService(ctx, cfg, Roles{Worker: true, API: true, Dev: true}, log)
	if err != nil {
		return err
	}
	defer s.Close()
	api := "http://" + strings.Replace(s.Addr(), "[::]", "localhost", 1)
	fmt.Fprintf(stdout, `dispatcher dev is running
  kafka    %s  (embedded broker, data in %s; topics %s)
  redis    %s
  api      %s
  api key  %s
  status   curl -H "Authorization: Bearer $KEY" %s/v1/intents/{id}
  outbox   curl -H "Authorization: Bearer $KEY" %s/v1/sandbox/outbox   (what the sandbox channels would have sent)
  produce  go run ./services/dispatcher produce --count 100
Stop with Ctrl-C.
`, strings.Join(cfg.Brokers, ","), *dataDir, strings.Join(kafkaio.DefaultTopics.All(), " "), redisNote, api, apiKey, api, api)
	err = s.Run(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// devSecrets gives dev mode an admin API key and an opt-out signing key
// unless the environment sets them, kept in the data dir so that a restart
// keeps the key you copied and the links already sent. It returns the API
// key to print ("(from DISPATCHER_API_KEYS)" when the environment set it).
func devSecrets(cfg *Config, dataDir string) (string, error) {
	path := filepath.Join(dataDir, "dev-secrets.json")
	var sec struct {
		APIKey       string `json:"api_key"`
		OptOutSecret string `json:"optout_secret"`
	}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &sec)
	}
	if sec.APIKey == "" || len(sec.OptOutSecret) < 32 {
		sec.APIKey, sec.OptOutSecret = "dev-"+randomHex(16), randomHex(32)
		b, _ := json.Marshal(sec)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", fmt.Errorf("dev secrets: %w", err)
		}
	}
	shown := sec.APIKey
	if cfg.APIKeys == "" {
		cfg.APIKeys = "admin:" + httpapi.HashAPIKey(sec.APIKey)
	} else {
		shown = "(from DISPATCHER_API_KEYS)"
	}
	if cfg.OptOutKeys == "" {
		cfg.OptOutKeys = "dev:" + sec.OptOutSecret
	}
	return shown, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
