// Command dispatcher is the contact dispatcher: the one composition root. It
// reads the environment, wires concrete things and runs one of:
//
//	dispatcher dev       everything in one process: embedded Kafka broker,
//	                     in-process Redis (or REDIS_URL), sandbox channels,
//	                     worker and API
//	dispatcher worker    consume reminders.intents and decide each intent
//	dispatcher api       serve the HTTP API
//	dispatcher produce   write sample intents to a broker
//	dispatcher bench     measure it end to end against its ceilings
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // time zones without a system zoneinfo (scratch images)
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "dispatcher:", err)
		}
		os.Exit(2)
	}
}

// signalContext ends on SIGINT or SIGTERM: the start of a graceful shutdown.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

const usage = `usage: dispatcher <command> [flags]

commands:
  dev       run everything in one process (embedded Kafka broker, in-process Redis
            unless DISPATCHER_REDIS_URL/REDIS_URL is set, sandbox channels, worker, API)
  worker    consume reminders.intents and take each intent to a decision
  api       serve the HTTP API
  produce   write sample intents to Kafka
  bench     measure throughput and latency end to end, with the ceilings beside them
  broker    run the embedded Kafka protocol broker alone, with the topics
  help      show this and the environment variables

Run "dispatcher <command> -h" for a command's flags.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("a command is required")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, args, getenv, stdout, stderr)
	case "worker":
		return runProd(ctx, "worker", Roles{Worker: true}, args, getenv, stderr)
	case "api":
		return runProd(ctx, "api", Roles{API: true}, args, getenv, stderr)
	case "produce":
		return runProduce(ctx, args, getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, args, getenv, stdout, stderr)
	case "broker":
		return runBroker(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		fmt.Fprintln(stdout, "\nenvironment:")
		for _, v := range envVars {
			fmt.Fprintf(stdout, "  %-28s %s\n", v[0], v[1])
		}
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// runProd runs the worker or the API against real Kafka and Redis.
func runProd(ctx context.Context, name string, roles Roles, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := configFromEnv(getenv, false)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	s, err := NewService(ctx, cfg, roles, log)
	if err != nil {
		return err
	}
	defer s.Close()
	log.Info("dispatcher started", "role", name, "owner", s.Owner, "brokers", cfg.Brokers, "redis", redactURL(cfg.RedisURL), "http", s.Addr())
	err = s.Run(ctx)
	log.Info("dispatcher stopped", "role", name)
	return err
}
