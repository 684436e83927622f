package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/channel/breaker"
	"github.com/contactd/dispatcher/pkg/channel/email"
	"github.com/contactd/dispatcher/pkg/channel/ratelimit"
	"github.com/contactd/dispatcher/pkg/channel/sandbox"
	"github.com/contactd/dispatcher/pkg/channel/twilio"
	"github.com/contactd/dispatcher/pkg/channel/wechat"
	"github.com/contactd/dispatcher/pkg/intent"
	"github.com/contactd/dispatcher/pkg/store"
	"github.com/contactd/dispatcher/services/dispatcher/internal/worker"
)

// adapter is what every provider adapter offers.
type adapter interface {
	Send(ctx context.Context, m channel.Message) (channel.Receipt, error)
	Idempotent() bool
	Name() string
}

// sandboxChannel is the sandbox serving one channel: each channel gets its
// own name, so its own breaker.
type sandboxChannel struct {
	*sandbox.Sandbox
	name string
}

func (s sandboxChannel) Name() string { return s.name }

// providers builds each channel's sender as configured: the adapter behind
// its own breaker, held to its shared rate. The closers release the
// adapters' connections (the SMTP pool, HTTP keep-alives) once the worker
// stopped.
func providers(cfg Config, dev bool, sb *sandbox.Sandbox, rdb redis.UniversalClient, reg prometheus.Registerer, log *slog.Logger) (map[intent.Channel]worker.Sender, []*breaker.Breaker, []io.Closer, error) {
	state := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dispatcher_breaker_state", Help: "Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.",
	}, []string{"provider"})
	reg.MustRegister(state)
	onChange := func(provider, to string) {
		v := map[string]float64{"closed": 0, "half-open": 1, "open": 2}[to]
		state.WithLabelValues(provider).Set(v)
		log.Warn("provider breaker changed state", "provider", provider, "state", to)
	}
	callback := strings.TrimRight(cfg.PublicBaseURL, "/") + "/webhooks/twilio/status"
	tw := twilio.Config{
		AccountSID: cfg.Twilio.AccountSID, AuthToken: cfg.Twilio.AuthToken, From: cfg.Twilio.From,
		MessagingServiceSID: cfg.Twilio.MessagingServiceSID, BaseURL: cfg.Twilio.BaseURL, StatusCallbackURL: callback,
		Timeout: cfg.SendTimeout,
	}
	out := map[intent.Channel]worker.Sender{}
	var breakers []*breaker.Breaker
	var closers []io.Closer
	for _, ch := range intent.Channels {
		var a adapter
		var err error
		tw := tw
		tw.Concurrency = cfg.Concurrency[string(ch)] // one keep-alive transport per adapter, sized to its channel
		switch p := cfg.Providers[string(ch)]; p {
		case "sandbox":
			a = sandboxChannel{Sandbox: sb, name: "sandbox-" + string(ch)}
		case "twilio":
			if ch == intent.Voice {
				a, err = twilio.NewVoice(tw)
			} else {
				a, err = twilio.NewSMS(tw)
			}
		case "smtp":
			a, err = email.New(email.Config{
				Addr: cfg.SMTP.Addr, Username: cfg.SMTP.Username, Password: cfg.SMTP.Password, From: cfg.SMTP.From,
				TLS: cfg.SMTP.TLS, AllowPlaintext: dev, DKIMKeyFile: cfg.SMTP.DKIMKeyFile, DKIMSelector: cfg.SMTP.DKIMSelector,
				DKIMDomain: cfg.SMTP.DKIMDomain, UnsubscribeMailto: cfg.SMTP.UnsubscribeMailto, Timeout: cfg.SendTimeout,
				PoolSize: cfg.SMTP.PoolSize, MaxMessagesPerConn: cfg.SMTP.MaxMessagesPerConn,
			})
		case "wechat":
			a, err = wechat.New(wechat.Config{
				AppID: cfg.WeChat.AppID, Secret: cfg.WeChat.Secret, BaseURL: cfg.WeChat.BaseURL,
				TemplateIDs: cfg.WeChat.TemplateIDs, LinkURL: cfg.WeChat.LinkURL, Timeout: cfg.SendTimeout,
				Concurrency: cfg.Concurrency[string(ch)],
			}, wechat.NewTokenStore(rdb, cfg.RedisPrefix))
		default:
			err = fmt.Errorf("unknown provider %q", p)
		}
		if err != nil {
			for _, c := range closers {
				_ = c.Close()
			}
			return nil, nil, nil, fmt.Errorf("%s provider %s: %w", ch, cfg.Providers[string(ch)], err)
		}
		if c, ok := a.(io.Closer); ok && cfg.Providers[string(ch)] != "sandbox" { // the service closes the one sandbox itself
			closers = append(closers, c)
		}
		b := breaker.New(a, breaker.Config{
			MinRequests: uint32(cfg.Breaker.MinRequests), FailureRatio: cfg.Breaker.FailureRatio, CoolDown: cfg.Breaker.CoolDown,
		}, onChange)
		state.WithLabelValues(a.Name()).Set(0)
		breakers = append(breakers, b)
		r := cfg.Rates[string(ch)]
		out[ch] = ratelimit.Wrap(b, ratelimit.New(rdb, cfg.RedisPrefix, a.Name(), r.N, r.Per))
	}
	return out, breakers, closers, nil
}

// publishProviders writes this worker's breaker states to Redis every few
// seconds, for /v1/ops/summary on whichever process serves it.
func publishProviders(ctx context.Context, st *store.Store, owner string, bs []*breaker.Breaker, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		states := map[string][]byte{}
		for _, b := range bs {
			v, _ := json.Marshal(providerState{State: b.State(), Owner: owner, Updated: time.Now().UTC()})
			states[b.Name()] = v
		}
		if err := st.PutProviderStates(ctx, owner, states); err != nil && ctx.Err() == nil {
			log.Debug("cannot publish provider states", "err", err)
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			var mine []string
			for _, b := range bs {
				mine = append(mine, owner+"|"+b.Name())
			}
			_ = st.DropProviderStates(dctx, mine...)
			cancel()
			return
		case <-t.C:
		}
	}
}

// providerState is one worker's view of one provider.
type providerState struct {
	breaker.State
	Owner   string    `json:"worker"`
	Updated time.Time `json:"updated"`
}
