package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Config is the whole service's configuration. It is read from the
// environment in exactly one place, configFromEnv; everything else receives
// the parts it needs.
type Config struct {
	Brokers       []string      // DISPATCHER_KAFKA_BROKERS
	RedisURL      string        // DISPATCHER_REDIS_URL or REDIS_URL
	RedisPrefix   string        // DISPATCHER_REDIS_PREFIX
	HTTPAddr      string        // DISPATCHER_HTTP_ADDR
	PublicBaseURL string        // DISPATCHER_PUBLIC_BASE_URL
	Group         string        // DISPATCHER_GROUP
	StatusTTL     time.Duration // DISPATCHER_STATUS_TTL
	SendTimeout   time.Duration // DISPATCHER_SEND_TIMEOUT
	ConfigDir     string        // DISPATCHER_CONFIG_DIR: overrides the configs built into the binary
	Profile       string        // DISPATCHER_PROFILE: policy profile name or file
	LogLevel      slog.Level    // DISPATCHER_LOG_LEVEL
	LogFormat     string        // DISPATCHER_LOG_FORMAT: json or text
	Providers     map[string]string
	// SandboxJournal: DISPATCHER_SANDBOX_JOURNAL, a file where the sandbox
	// appends every send and which it reads back at start.
	SandboxJournal string
	// SandboxLatency: DISPATCHER_SANDBOX_LATENCY, how long each sandbox send takes.
	SandboxLatency time.Duration
}

// envVars lists every variable configFromEnv reads, for `dispatcher help`.
var envVars = [][2]string{
	{"DISPATCHER_KAFKA_BROKERS", "comma-separated brokers (dev: the embedded broker)"},
	{"DISPATCHER_REDIS_URL", "redis:// URL, or several comma-separated host:port for a cluster (also REDIS_URL; dev: in-process Redis)"},
	{"DISPATCHER_REDIS_PREFIX", "prefix of every Redis key (default dsp:)"},
	{"DISPATCHER_HTTP_ADDR", "API listen address (default :8080)"},
	{"DISPATCHER_PUBLIC_BASE_URL", "base of links and webhook URLs as the outside sees them (default http://localhost:8080)"},
	{"DISPATCHER_GROUP", "consumer group (default dispatcher)"},
	{"DISPATCHER_STATUS_TTL", "how long intent records stay in Redis (default 2160h = 90 days)"},
	{"DISPATCHER_SEND_TIMEOUT", "deadline of one provider call (default 10s)"},
	{"DISPATCHER_PROFILE", "compliance policy: a profile name in configs/profiles (cn-bank, us-regf) or a .yaml file (default cn-bank)"},
	{"DISPATCHER_CONFIG_DIR", "directory with templates/, profiles/ and holidays/ overriding the built-in configs"},
	{"DISPATCHER_LOG_LEVEL", "debug, info, warn or error (default info)"},
	{"DISPATCHER_LOG_FORMAT", "json or text (default json; dev: text)"},
	{"DISPATCHER_SANDBOX_JOURNAL", "file where the sandbox appends each send (JSON lines) and remembers sent ids across restarts"},
	{"DISPATCHER_SANDBOX_LATENCY", "how long each sandbox send takes, like a provider's round trip (default 0)"},
	{"DISPATCHER_SMS_PROVIDER", "sandbox (default)"},
	{"DISPATCHER_VOICE_PROVIDER", "sandbox (default)"},
	{"DISPATCHER_EMAIL_PROVIDER", "sandbox (default)"},
	{"DISPATCHER_WECHAT_PROVIDER", "sandbox (default)"},
}

func configFromEnv(getenv func(string) string, dev bool) (Config, error) {
	c := Config{
		RedisPrefix:   "dsp:",
		HTTPAddr:      ":8080",
		PublicBaseURL: "http://localhost:8080",
		Group:         "dispatcher",
		Profile:       "cn-bank",
		StatusTTL:     90 * 24 * time.Hour,
		SendTimeout:   10 * time.Second,
		LogLevel:      slog.LevelInfo,
		LogFormat:     "json",
		Providers:     map[string]string{},
	}
	if dev {
		c.LogFormat = "text"
	}
	var errs []error
	str := func(name string, dst *string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*dst = v
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive duration like 10s or 2160h", name, v))
				return
			}
			*dst = d
		}
	}
	if v := getenv("DISPATCHER_KAFKA_BROKERS"); v != "" {
		for _, b := range strings.Split(v, ",") {
			if b = strings.TrimSpace(b); b != "" {
				c.Brokers = append(c.Brokers, b)
			}
		}
	}
	str("REDIS_URL", &c.RedisURL)
	str("DISPATCHER_REDIS_URL", &c.RedisURL)
	str("DISPATCHER_REDIS_PREFIX", &c.RedisPrefix)
	str("DISPATCHER_HTTP_ADDR", &c.HTTPAddr)
	str("DISPATCHER_PUBLIC_BASE_URL", &c.PublicBaseURL)
	str("DISPATCHER_GROUP", &c.Group)
	str("DISPATCHER_CONFIG_DIR", &c.ConfigDir)
	str("DISPATCHER_PROFILE", &c.Profile)
	str("DISPATCHER_LOG_FORMAT", &c.LogFormat)
	str("DISPATCHER_SANDBOX_JOURNAL", &c.SandboxJournal)
	dur("DISPATCHER_STATUS_TTL", &c.StatusTTL)
	dur("DISPATCHER_SEND_TIMEOUT", &c.SendTimeout)
	dur("DISPATCHER_SANDBOX_LATENCY", &c.SandboxLatency)
	if v := getenv("DISPATCHER_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("DISPATCHER_LOG_LEVEL: %q is not debug, info, warn or error", v))
		}
	}
	for _, ch := range []string{"SMS", "VOICE", "EMAIL", "WECHAT"} {
		p := strings.ToLower(strings.TrimSpace(getenv("DISPATCHER_" + ch + "_PROVIDER")))
		if p == "" {
			p = "sandbox"
		}
		if p != "sandbox" {
			errs = append(errs, fmt.Errorf("DISPATCHER_%s_PROVIDER: %q is not available (available: sandbox)", ch, p))
		}
		c.Providers[strings.ToLower(ch)] = p
	}
	if err := c.validate(dev); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

func (c Config) validate(dev bool) error {
	var errs []error
	if !dev && len(c.Brokers) == 0 {
		errs = append(errs, errors.New("DISPATCHER_KAFKA_BROKERS is required outside dev mode"))
	}
	if !dev && c.RedisURL == "" {
		errs = append(errs, errors.New("DISPATCHER_REDIS_URL (or REDIS_URL) is required outside dev mode"))
	}
	if u, err := url.Parse(c.PublicBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("DISPATCHER_PUBLIC_BASE_URL: %q is not an http(s) URL", c.PublicBaseURL))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("DISPATCHER_LOG_FORMAT: %q is not json or text", c.LogFormat))
	}
	if c.StatusTTL < time.Hour {
		errs = append(errs, errors.New("DISPATCHER_STATUS_TTL must be at least 1h"))
	}
	return errors.Join(errs...)
}
