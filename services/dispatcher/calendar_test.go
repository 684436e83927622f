package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contactd/dispatcher/pkg/policy"
)

// A bank drops next year's calendar into DISPATCHER_CONFIG_DIR: the built-in
// profile and templates stay, the profile's family picks the file up, and a
// bad date stops the start naming the file, the field and the value.
func TestConfigDirCalendar(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "holidays"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "holidays", "cn-2028.yaml")
	cal := "name: cn-2028\nsource: 国务院办公厅关于2028年部分节假日安排的通知\nyear: 2028\ndays_off:\n  - name: 元旦\n    from: 2028-01-01\n    to: 2028-01-03\n"
	if err := os.WriteFile(file, []byte(cal), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(configFS(dir), "cn-bank")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Calendars(), ","); got != "cn-2026,cn-2027,cn-2028" {
		t.Errorf("calendars %s, want the built-in two and the added one", got)
	}
	if _, err := loadCatalog(dir); err != nil {
		t.Errorf("templates with a config dir that has none: %v", err)
	}

	if err := os.WriteFile(file, []byte(strings.Replace(cal, "to: 2028-01-03", "to: 2028-13-03", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	env := map[string]string{"DISPATCHER_CONFIG_DIR": dir}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env["DISPATCHER_HTTP_ADDR"] = "127.0.0.1:0"
	err = run(ctx, []string{"dev", "--data-dir", t.TempDir(), "--kafka-port", "0"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "holidays/cn-2028.yaml") || !strings.Contains(err.Error(), `"2028-13-03"`) || !strings.Contains(err.Error(), "days_off[0]") {
		t.Errorf("start with a bad calendar date: %v, want an error naming the file, days_off[0] and the value", err)
	}

	// A templates folder there replaces the built-in templates whole.
	if err := os.WriteFile(file, []byte(cal), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bank.yaml", "overdue_notice.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "configs", "templates", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "templates", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := loadCatalog(dir)
	if err != nil {
		t.Fatal(err)
	}
	if names := c.Names(); len(names) != 1 || names[0] != "overdue_notice" {
		t.Errorf("templates %v, want only the config dir's overdue_notice", names)
	}
}

// The coverage metric is the start of the first uncovered year; the warning
// is logged from 60 days before it, and not earlier.
func TestWatchCalendar(t *testing.T) {
	p, err := policy.Load(configFS(""), "cn-bank")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now  time.Time
		warn bool
	}{
		{time.Date(2027, 11, 15, 0, 0, 0, 0, time.UTC), true},
		{time.Date(2027, 9, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		var logs lockedBuffer
		s := &Service{Profile: p, Reg: prometheus.NewRegistry(), log: slog.New(slog.NewTextHandler(&logs, nil))}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.watchCalendar(ctx, func() time.Time { return c.now }, time.Hour); close(done) }()
		var got float64
		deadline := time.Now().Add(5 * time.Second)
		for got == 0 && time.Now().Before(deadline) {
			got = metricSum(s.Reg, "dispatcher_calendar_covered_until")
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if want := time.Date(2028, 1, 1, 0, 0, 0, 0, p.DefaultZone).Unix(); int64(got) != want {
			t.Errorf("at %s: dispatcher_calendar_covered_until = %.0f, want %d", c.now, got, want)
		}
		if warned := strings.Contains(logs.String(), "end on 2027-12-31"); warned != c.warn {
			t.Errorf("at %s: warned %v, want %v (log %q)", c.now, warned, c.warn, logs.String())
		}
	}
}
