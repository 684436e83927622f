package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/contactd/dispatcher/pkg/channel/email"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
)

// Config is the whole service's configuration. It is read from the
// environment in exactly one place, configFromEnv; everything else receives
// the parts it needs.
type Config struct {
	Brokers     []string // DISPATCHER_KAFKA_BROKERS
	RedisURL    string   // DISPATCHER_REDIS_URL or REDIS_URL
	RedisPrefix string   // DISPATCHER_REDIS_PREFIX
	HTTPAddr    string   // DISPATCHER_HTTP_ADDR
	// HTTP server timeouts: DISPATCHER_HTTP_READ_TIMEOUT, _WRITE_TIMEOUT,
	// _IDLE_TIMEOUT.
	HTTPReadTimeout, HTTPWriteTimeout, HTTPIdleTimeout time.Duration
	// TrustedProxies: DISPATCHER_TRUSTED_PROXIES, CIDRs of the proxies
	// whose X-Forwarded-For names the client.
	TrustedProxies []*net.IPNet
	// PublicConnsPerIP: DISPATCHER_PUBLIC_CONNS_PER_IP, one client's
	// requests in flight on /u and the webhooks.
	PublicConnsPerIP int
	PublicBaseURL    string            // DISPATCHER_PUBLIC_BASE_URL
	Group            string            // DISPATCHER_GROUP
	SessionTimeout   time.Duration     // DISPATCHER_KAFKA_SESSION_TIMEOUT
	StatusTTL        time.Duration     // DISPATCHER_STATUS_TTL
	SendTimeout      time.Duration     // DISPATCHER_SEND_TIMEOUT
	ConfigDir        string            // DISPATCHER_CONFIG_DIR: overrides the configs built into the binary
	Profile          string            // DISPATCHER_PROFILE: policy profile name or file
	LogLevel         slog.Level        // DISPATCHER_LOG_LEVEL
	LogFormat        string            // DISPATCHER_LOG_FORMAT: json or text
	Providers        map[string]string // channel → provider name
	Twilio           TwilioConfig
	SMTP             SMTPConfig
	WeChat           WeChatConfig
	Rates            map[string]Rate // channel → shared send rate
	// Concurrency: DISPATCHER_<CHANNEL>_CONCURRENCY, channel → how many
	// calls to its provider may be in progress at once from this process.
	// An HTTP provider's keep-alive transport keeps that many connections;
	// the worker's in-flight bound per provider is to take it too.
	Concurrency map[string]int
	MaxInFlight int           // DISPATCHER_MAX_IN_FLIGHT: provider calls in flight at once in one worker
	AdmitWait   time.Duration // DISPATCHER_ADMIT_WAIT: longest wait for a provider's slot or rate before the gate defers or falls back
	LaneQueue   int           // DISPATCHER_LANE_QUEUE: intents a partition holds uncommitted before its intake stops
	Breaker     BreakerConfig
	RetryBase   time.Duration // DISPATCHER_RETRY_BASE
	RetryMax    time.Duration // DISPATCHER_RETRY_MAX
	RetryLimit  int           // DISPATCHER_RETRY_LIMIT
	APIKeys     string        // DISPATCHER_API_KEYS: scope:sha256hex,…
	OptOutKeys  string        // DISPATCHER_OPTOUT_KEYS: kid:secret,… (the first signs)
	// AddressKey: DISPATCHER_ADDRESS_KEY, the secret that keys the digests of
	// numbers, e-mail addresses and openids in Redis keys and events.
	AddressKey string
	// SandboxJournal: DISPATCHER_SANDBOX_JOURNAL, a file where the sandbox
	// appends every send and which it reads back at start.
	SandboxJournal string
	// SandboxLatency: DISPATCHER_SANDBOX_LATENCY, how long each sandbox
	// send takes: a duration, or lognormal:P50:P99.
	SandboxLatency sandbox.Latency
	// SandboxForgetful: DISPATCHER_SANDBOX_FORGETFUL=true, the sandbox does
	// not remember sent ids (a million ids make a large map: benchmarks).
	SandboxForgetful bool
}

// TwilioConfig is DISPATCHER_TWILIO_*.
type TwilioConfig struct {
	AccountSID, AuthToken, From, MessagingServiceSID, BaseURL string
}

// SMTPConfig is DISPATCHER_SMTP_*.
type SMTPConfig struct {
	Addr, Username, Password, From, TLS, DKIMKeyFile, DKIMSelector, DKIMDomain, UnsubscribeMailto string
	PoolSize                                                                                      int // DISPATCHER_SMTP_POOL_SIZE: authenticated connections kept to the relay
	MaxMessagesPerConn                                                                            int // DISPATCHER_SMTP_MAX_MESSAGES_PER_CONN: messages one connection carries
}

// DefaultConcurrency is a channel's DISPATCHER_<CHANNEL>_CONCURRENCY when
// it is not set.
// Four channels at their default fill DISPATCHER_MAX_IN_FLIGHT's default.
const DefaultConcurrency = 256

// WeChatConfig is DISPATCHER_WECHAT_*.
type WeChatConfig struct {
	AppID, Secret, BaseURL, LinkURL string
	TemplateIDs                     map[string]string
}

// Rate is a shared send rate: N per Per.
type Rate struct {
	N   int
	Per time.Duration
}

// BreakerConfig is DISPATCHER_BREAKER_*.
type BreakerConfig struct {
	MinRequests  int
	FailureRatio float64
	CoolDown     time.Duration
}

// envVars lists every variable configFromEnv reads, for `dispatcher help`.
var envVars = [][2]string{
	{"DISPATCHER_KAFKA_BROKERS", "comma-separated brokers (dev: the embedded broker)"},
	{"DISPATCHER_REDIS_URL", "redis:// URL, or several comma-separated host:port for a cluster (also REDIS_URL; dev: in-process Redis)"},
	{"DISPATCHER_REDIS_PREFIX", "prefix of every Redis key (default dsp:)"},
	{"DISPATCHER_HTTP_ADDR", "API listen address (default :8080)"},
	{"DISPATCHER_HTTP_READ_TIMEOUT", "longest a client may take to send a request, body included (default 15s)"},
	{"DISPATCHER_HTTP_WRITE_TIMEOUT", "longest the server takes to answer one request (default 30s)"},
	{"DISPATCHER_HTTP_IDLE_TIMEOUT", "an idle keep-alive connection is closed after this (default 60s)"},
	{"DISPATCHER_TRUSTED_PROXIES", "CIDRs of the proxies whose X-Forwarded-For names the client, e.g. 10.0.0.0/8 (default none: the socket's address)"},
	{"DISPATCHER_PUBLIC_CONNS_PER_IP", "requests one client may have in flight on /u and the webhooks (default 10)"},
	{"DISPATCHER_PUBLIC_BASE_URL", "base of links and webhook URLs as the outside sees them (default http://localhost:8080)"},
	{"DISPATCHER_GROUP", "consumer group (default dispatcher); reminders.control is read in the group <group>-control"},
	{"DISPATCHER_KAFKA_SESSION_TIMEOUT", "consumer session timeout: how soon a dead worker's partitions move (default 10s)"},
	{"DISPATCHER_STATUS_TTL", "how long intent records stay in Redis (default 2160h = 90 days)"},
	{"DISPATCHER_SEND_TIMEOUT", "deadline of one provider call (default 10s)"},
	{"DISPATCHER_PROFILE", "compliance policy: a profile name in configs/profiles (cn-bank, us-regf) or a .yaml file (default cn-bank)"},
	{"DISPATCHER_CONFIG_DIR", "directory with templates/, profiles/ and holidays/ overriding the built-in configs"},
	{"DISPATCHER_LOG_LEVEL", "debug, info, warn or error (default info)"},
	{"DISPATCHER_LOG_FORMAT", "json or text (default json; dev: text)"},
	{"DISPATCHER_SANDBOX_JOURNAL", "file where the sandbox appends each send (JSON lines) and remembers sent ids across restarts"},
	{"DISPATCHER_SANDBOX_LATENCY", "how long each sandbox send takes, like a provider's round trip: 200ms, or lognormal:P50:P99 such as lognormal:150ms:800ms (default 0)"},
	{"DISPATCHER_SANDBOX_FORGETFUL", "true: the sandbox does not remember sent ids (benchmarks of millions)"},
	{"DISPATCHER_API_KEYS", "API keys as scope:sha256hex[:id],… (scopes read < write < compliance < admin; id names the key as an actor, default the hash's first 12 hex digits); dev: an admin key kept in the data dir and printed"},
	{"DISPATCHER_OPTOUT_KEYS", "opt-out link keys kid:secret,…; the first signs, all verify (rotation); dev: kept in the data dir"},
	{"DISPATCHER_ADDRESS_KEY", "secret (16 bytes or more) keying the digests of phone numbers, e-mail addresses and openids in Redis keys and on reminders.status; never rotate it casually: per-number counts and the number index start afresh (default: derived from the first DISPATCHER_OPTOUT_KEYS secret)"},
	{"DISPATCHER_SMS_PROVIDER", "sandbox (default) or twilio"},
	{"DISPATCHER_VOICE_PROVIDER", "sandbox (default) or twilio"},
	{"DISPATCHER_EMAIL_PROVIDER", "sandbox (default) or smtp"},
	{"DISPATCHER_WECHAT_PROVIDER", "sandbox (default) or wechat"},
	{"DISPATCHER_TWILIO_ACCOUNT_SID, _AUTH_TOKEN", "Twilio credentials"},
	{"DISPATCHER_TWILIO_FROM, _MESSAGING_SERVICE_SID", "Twilio sender: a number, or a Messaging Service (SMS only)"},
	{"DISPATCHER_TWILIO_BASE_URL", "only to point at a test server (default https://api.twilio.com)"},
	{"DISPATCHER_SMTP_ADDR, _USERNAME, _PASSWORD", "SMTP relay host:port and AUTH"},
	{"DISPATCHER_SMTP_FROM", "From header, e.g. '示例银行 <noreply@bank.example>'"},
	{"DISPATCHER_SMTP_TLS", "starttls (default), tls, or none (dev mode only)"},
	{"DISPATCHER_SMTP_DKIM_KEY_FILE, _DKIM_SELECTOR, _DKIM_DOMAIN", "DKIM signing key (PEM), selector, domain (default From's)"},
	{"DISPATCHER_SMTP_UNSUBSCRIBE_MAILTO", "mailto address offered in List-Unsubscribe"},
	{"DISPATCHER_SMTP_POOL_SIZE", "authenticated connections kept open to the relay, so messages sent at once (default 4)"},
	{"DISPATCHER_SMTP_MAX_MESSAGES_PER_CONN", "messages one SMTP connection carries before a new one is opened (default 100)"},
	{"DISPATCHER_WECHAT_APPID, _SECRET", "WeChat Official Account credentials"},
	{"DISPATCHER_WECHAT_TEMPLATE_IDS", "our template → WeChat template_id: overdue_notice=TPL1,payment_due_soon=TPL2"},
	{"DISPATCHER_WECHAT_BASE_URL, _LINK_URL", "API base (test servers only); link when a message has no opt-out link"},
	{"DISPATCHER_SMS_RATE, _VOICE_RATE, _EMAIL_RATE, _WECHAT_RATE", "send rate shared by every replica: 1/s, 600/m (default unlimited)"},
	{"DISPATCHER_SMS_CONCURRENCY, _VOICE_, _EMAIL_, _WECHAT_", "provider calls in progress at once from one process, per channel (the provider's concurrency limit); an HTTP provider keeps as many keep-alive connections; SMTP sends are held to the pool size too (default 256)"},
	{"DISPATCHER_MAX_IN_FLIGHT", "provider calls in flight at once in one worker, all channels; sends/s ≈ this ÷ provider latency (default 1024)"},
	{"DISPATCHER_ADMIT_WAIT", "longest an intent waits for its provider's slot or shared rate before the gate defers it (provider_busy) or falls back (default 1s)"},
	{"DISPATCHER_LANE_QUEUE", "intents one partition holds read but uncommitted (at most DISPATCHER_MAX_IN_FLIGHT of them undecided); when full the worker stops fetching it (default 4096)"},
	{"DISPATCHER_BREAKER_MIN_REQUESTS, _FAILURE_RATIO, _COOL_DOWN", "a provider's breaker opens at this share of failures over at least this many calls, for this long (10, 0.5, 30s)"},
	{"DISPATCHER_RETRY_BASE, _RETRY_MAX, _RETRY_LIMIT", "retries of a failed send: first wait, longest wait, how many (30s, 30m, 8)"},
}

func configFromEnv(getenv func(string) string, dev bool) (Config, error) {
	c := Config{
		RedisPrefix:      "dsp:",
		HTTPAddr:         ":8080",
		HTTPReadTimeout:  15 * time.Second,
		HTTPWriteTimeout: 30 * time.Second,
		HTTPIdleTimeout:  60 * time.Second,
		PublicConnsPerIP: 10,
		PublicBaseURL:    "http://localhost:8080",
		Group:            "dispatcher",
		SessionTimeout:   10 * time.Second,
		Profile:          "cn-bank",
		StatusTTL:        90 * 24 * time.Hour,
		SendTimeout:      10 * time.Second,
		MaxInFlight:      1024,
		AdmitWait:        time.Second,
		LaneQueue:        4096,
		LogLevel:         slog.LevelInfo,
		LogFormat:        "json",
		Providers:        map[string]string{},
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
	dur("DISPATCHER_HTTP_READ_TIMEOUT", &c.HTTPReadTimeout)
	dur("DISPATCHER_HTTP_WRITE_TIMEOUT", &c.HTTPWriteTimeout)
	dur("DISPATCHER_HTTP_IDLE_TIMEOUT", &c.HTTPIdleTimeout)
	for _, v := range strings.Split(getenv("DISPATCHER_TRUSTED_PROXIES"), ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		_, n, err := net.ParseCIDR(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("DISPATCHER_TRUSTED_PROXIES: %q is not a CIDR like 10.0.0.0/8", v))
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, n)
	}
	if v := strings.TrimSpace(getenv("DISPATCHER_PUBLIC_CONNS_PER_IP")); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("DISPATCHER_PUBLIC_CONNS_PER_IP: %q is not a positive number", v))
		} else {
			c.PublicConnsPerIP = n
		}
	}
	dur("DISPATCHER_SEND_TIMEOUT", &c.SendTimeout)
	dur("DISPATCHER_ADMIT_WAIT", &c.AdmitWait)
	dur("DISPATCHER_KAFKA_SESSION_TIMEOUT", &c.SessionTimeout)
	if v := strings.TrimSpace(getenv("DISPATCHER_SANDBOX_LATENCY")); v != "" {
		l, err := sandbox.ParseLatency(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("DISPATCHER_SANDBOX_LATENCY: %w", err))
		}
		c.SandboxLatency = l
	}
	count := func(name string, dst *int) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s: %q is not a positive number", name, v))
				return
			}
			*dst = n
		}
	}
	count("DISPATCHER_MAX_IN_FLIGHT", &c.MaxInFlight)
	count("DISPATCHER_LANE_QUEUE", &c.LaneQueue)
	c.SandboxForgetful = getenv("DISPATCHER_SANDBOX_FORGETFUL") == "true"
	if v := getenv("DISPATCHER_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			errs = append(errs, fmt.Errorf("DISPATCHER_LOG_LEVEL: %q is not debug, info, warn or error", v))
		}
	}
	available := map[string][]string{"SMS": {"sandbox", "twilio"}, "VOICE": {"sandbox", "twilio"}, "EMAIL": {"sandbox", "smtp"}, "WECHAT": {"sandbox", "wechat"}}
	c.Rates = map[string]Rate{}
	c.Concurrency = map[string]int{}
	for _, ch := range []string{"SMS", "VOICE", "EMAIL", "WECHAT"} {
		n := DefaultConcurrency
		count("DISPATCHER_"+ch+"_CONCURRENCY", &n)
		c.Concurrency[strings.ToLower(ch)] = n
		p := strings.ToLower(strings.TrimSpace(getenv("DISPATCHER_" + ch + "_PROVIDER")))
		if p == "" {
			p = "sandbox"
		}
		if !slices.Contains(available[ch], p) {
			errs = append(errs, fmt.Errorf("DISPATCHER_%s_PROVIDER: %q is not one of %s", ch, p, strings.Join(available[ch], ", ")))
		}
		c.Providers[strings.ToLower(ch)] = p
		if v := strings.TrimSpace(getenv("DISPATCHER_" + ch + "_RATE")); v != "" {
			r, err := parseRate(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("DISPATCHER_%s_RATE: %w", ch, err))
			}
			c.Rates[strings.ToLower(ch)] = r
		}
	}
	str("DISPATCHER_API_KEYS", &c.APIKeys)
	str("DISPATCHER_OPTOUT_KEYS", &c.OptOutKeys)
	str("DISPATCHER_ADDRESS_KEY", &c.AddressKey)
	str("DISPATCHER_TWILIO_ACCOUNT_SID", &c.Twilio.AccountSID)
	str("DISPATCHER_TWILIO_AUTH_TOKEN", &c.Twilio.AuthToken)
	str("DISPATCHER_TWILIO_FROM", &c.Twilio.From)
	str("DISPATCHER_TWILIO_MESSAGING_SERVICE_SID", &c.Twilio.MessagingServiceSID)
	str("DISPATCHER_TWILIO_BASE_URL", &c.Twilio.BaseURL)
	str("DISPATCHER_SMTP_ADDR", &c.SMTP.Addr)
	str("DISPATCHER_SMTP_USERNAME", &c.SMTP.Username)
	str("DISPATCHER_SMTP_PASSWORD", &c.SMTP.Password)
	str("DISPATCHER_SMTP_FROM", &c.SMTP.From)
	str("DISPATCHER_SMTP_TLS", &c.SMTP.TLS)
	str("DISPATCHER_SMTP_DKIM_KEY_FILE", &c.SMTP.DKIMKeyFile)
	str("DISPATCHER_SMTP_DKIM_SELECTOR", &c.SMTP.DKIMSelector)
	str("DISPATCHER_SMTP_DKIM_DOMAIN", &c.SMTP.DKIMDomain)
	str("DISPATCHER_SMTP_UNSUBSCRIBE_MAILTO", &c.SMTP.UnsubscribeMailto)
	c.SMTP.PoolSize, c.SMTP.MaxMessagesPerConn = email.DefaultPoolSize, email.DefaultMaxMessagesPerConn
	count("DISPATCHER_SMTP_POOL_SIZE", &c.SMTP.PoolSize)
	count("DISPATCHER_SMTP_MAX_MESSAGES_PER_CONN", &c.SMTP.MaxMessagesPerConn)
	str("DISPATCHER_WECHAT_APPID", &c.WeChat.AppID)
	str("DISPATCHER_WECHAT_SECRET", &c.WeChat.Secret)
	str("DISPATCHER_WECHAT_BASE_URL", &c.WeChat.BaseURL)
	str("DISPATCHER_WECHAT_LINK_URL", &c.WeChat.LinkURL)
	if v := strings.TrimSpace(getenv("DISPATCHER_WECHAT_TEMPLATE_IDS")); v != "" {
		c.WeChat.TemplateIDs = map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			k, id, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" || id == "" {
				errs = append(errs, fmt.Errorf("DISPATCHER_WECHAT_TEMPLATE_IDS: %q is not template=template_id", kv))
				continue
			}
			c.WeChat.TemplateIDs[k] = id
		}
	}
	if v := strings.TrimSpace(getenv("DISPATCHER_BREAKER_MIN_REQUESTS")); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("DISPATCHER_BREAKER_MIN_REQUESTS: %q is not a positive number", v))
		} else {
			c.Breaker.MinRequests = n
		}
	}
	if v := strings.TrimSpace(getenv("DISPATCHER_BREAKER_FAILURE_RATIO")); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 || f > 1 {
			errs = append(errs, fmt.Errorf("DISPATCHER_BREAKER_FAILURE_RATIO: %q is not in (0, 1]", v))
		} else {
			c.Breaker.FailureRatio = f
		}
	}
	dur("DISPATCHER_BREAKER_COOL_DOWN", &c.Breaker.CoolDown)
	dur("DISPATCHER_RETRY_BASE", &c.RetryBase)
	dur("DISPATCHER_RETRY_MAX", &c.RetryMax)
	if v := strings.TrimSpace(getenv("DISPATCHER_RETRY_LIMIT")); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("DISPATCHER_RETRY_LIMIT: %q is not a positive number", v))
		} else {
			c.RetryLimit = n
		}
	}
	if err := c.validate(dev); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// parseRate reads "N/s", "N/m" or "N/h".
func parseRate(v string) (Rate, error) {
	n, unit, ok := strings.Cut(v, "/")
	k, err := strconv.Atoi(strings.TrimSpace(n))
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[strings.TrimSpace(unit)]
	if !ok || err != nil || k < 1 || per == 0 {
		return Rate{}, fmt.Errorf("%q is not a rate like 1/s or 600/m", v)
	}
	return Rate{N: k, Per: per}, nil
}

func (c Config) validate(dev bool) error {
	var errs []error
	if !dev && len(c.Brokers) == 0 {
		errs = append(errs, errors.New("DISPATCHER_KAFKA_BROKERS is required outside dev mode"))
	}
	if !dev && c.APIKeys == "" {
		errs = append(errs, errors.New("DISPATCHER_API_KEYS is required outside dev mode (the API refuses every request without a key)"))
	}
	if !dev && c.OptOutKeys == "" {
		errs = append(errs, errors.New("DISPATCHER_OPTOUT_KEYS is required outside dev mode (opt-out links are signed with it)"))
	}
	if c.AddressKey != "" && len(c.AddressKey) < 16 {
		errs = append(errs, errors.New("DISPATCHER_ADDRESS_KEY must be 16 bytes or more"))
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

// addressKey is the key of the address digests: DISPATCHER_ADDRESS_KEY, or
// one derived from the first opt-out key's secret (set the variable before
// rotating that key: a new key starts per-number counts afresh).
func (c Config) addressKey() []byte {
	if c.AddressKey != "" {
		return []byte(c.AddressKey)
	}
	first, _, _ := strings.Cut(c.OptOutKeys, ",")
	_, secret, _ := strings.Cut(strings.TrimSpace(first), ":")
	sum := sha256.Sum256([]byte("dispatcher address key|" + secret))
	return sum[:]
}
