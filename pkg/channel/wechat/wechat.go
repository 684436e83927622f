// Package wechat sends template messages through a WeChat Official Account
// (cgi-bin/message/template/send). It owns the account's access token, kept
// in Redis and shared by every replica, and the reading of WeChat's errcodes
// as the dispatcher's error kinds.
package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/contactd/dispatcher/pkg/channel"
	"github.com/contactd/dispatcher/pkg/intent"
)

// Provider is the adapter's name, on receipts and breakers.
const Provider = "wechat"

// DefaultBaseURL is WeChat's API.
const DefaultBaseURL = "https://api.weixin.qq.com"

// Config configures a Client.
type Config struct {
	AppID  string
	Secret string
	// BaseURL is WeChat's API; default DefaultBaseURL. Tests point it at
	// a wechattest server.
	BaseURL string
	// TemplateIDs maps our template names to the account's template_id.
	TemplateIDs map[string]string
	// LinkURL, if set, is the link of a message that carries no opt-out
	// link of its own.
	LinkURL string
	// Timeout bounds each HTTP call to WeChat; default 10s.
	Timeout time.Duration
	// RefreshBefore: a token is refreshed this long before it expires;
	// default 5m, the time WeChat's stable_token starts handing out its
	// successor.
	RefreshBefore time.Duration
	// Concurrency is how many calls to WeChat this client makes at once:
	// its own keep-alive transport keeps that many connections. Default
	// channel.DefaultConcurrency.
	Concurrency int
	// HTTPClient makes the calls; default a client of its own, over a
	// transport sized by Concurrency.
	HTTPClient *http.Client
}

func (c *Config) defaults() {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RefreshBefore == 0 {
		c.RefreshBefore = 5 * time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
}

// Validate reports a config that cannot work. Unset fields with a default
// are fine.
func (c Config) Validate() error {
	var errs []error
	if c.AppID == "" {
		errs = append(errs, errors.New("wechat: app id is required"))
	}
	if c.Secret == "" {
		errs = append(errs, errors.New("wechat: secret is required"))
	}
	if c.BaseURL != "" {
		if err := absURL(c.BaseURL); err != nil {
			errs = append(errs, fmt.Errorf("wechat: base url: %w", err))
		}
	}
	if c.LinkURL != "" {
		if err := absURL(c.LinkURL); err != nil {
			errs = append(errs, fmt.Errorf("wechat: link url: %w", err))
		}
	}
	// No template at all means no message can ever be sent: a start-up
	// error, not a failure per message.
	if len(c.TemplateIDs) == 0 {
		errs = append(errs, errors.New("wechat: at least one template id is required"))
	}
	for name, id := range c.TemplateIDs {
		if name == "" || id == "" {
			errs = append(errs, fmt.Errorf("wechat: template %q: empty name or template id", name))
		}
	}
	if c.Timeout < 0 || c.RefreshBefore < 0 || c.Concurrency < 0 {
		errs = append(errs, errors.New("wechat: negative duration or concurrency"))
	}
	return errors.Join(errs...)
}

func absURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// Client sends template messages. It is safe for concurrent use.
type Client struct {
	cfg    Config
	tokens *TokenStore
	own    *http.Transport // the transport of the default HTTPClient; nil when one is lent
	now    func() time.Time
}

// New returns a client of the account in cfg, its token kept in tokens.
func New(cfg Config, tokens *TokenStore) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tokens == nil {
		return nil, errors.New("wechat: a token store is required")
	}
	var own *http.Transport
	if cfg.HTTPClient == nil {
		own = channel.Transport(cfg.Concurrency)
		cfg.HTTPClient = &http.Client{Transport: own}
	}
	cfg.defaults()
	return &Client{cfg: cfg, tokens: tokens, own: own, now: time.Now}, nil
}

// Close closes the client's idle connections to WeChat.
func (c *Client) Close() error {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// Name is the provider's name.
func (c *Client) Name() string { return Provider }

// Idempotent is true: WeChat answers a repeat of the same openid and
// client_msg_id (the intent id) with the first message's msgid instead of
// sending it again, so a send whose outcome is unknown may be repeated.
// WeChat documents that memory for 10 minutes only.
func (c *Client) Idempotent() bool { return true }

// IdempotencyWindow is how long WeChat recognises a repeated client_msg_id:
// a send whose outcome is unknown may be repeated only within it.
func (c *Client) IdempotencyWindow() time.Duration { return 10 * time.Minute }

// Send sends m as a template message to the openid m.To. m.Title is not
// sent: a WeChat template's title is fixed by the template chosen in the
// account, and the "first" keyword that once carried a heading is no longer
// shown; the template's keywords are m.Fields.
func (c *Client) Send(ctx context.Context, m channel.Message) (channel.Receipt, error) {
	tid, ok := c.cfg.TemplateIDs[m.Template]
	if !ok {
		// Permanent, not Retryable: no wait makes a template id appear
		// (a deploy does). Retrying would hold the intent for hours, and
		// a Retryable failure counts against the breaker, which would
		// then stop every other, working, WeChat template. Permanent lets
		// the worker fall back to another channel now.
		return channel.Receipt{}, &channel.Error{Kind: channel.Permanent, Code: "template_not_configured",
			Err: fmt.Errorf("wechat: no template id configured for template %q", m.Template)}
	}
	body, err := encode(m, tid, c.cfg.LinkURL)
	if err != nil {
		return channel.Receipt{}, &channel.Error{Kind: channel.Permanent, Code: "bad_message", Err: err}
	}
	tok, err := c.token(ctx, "")
	if err != nil {
		return channel.Receipt{}, err
	}
	o := c.send(ctx, tok, body)
	if o.err == nil && o.status == http.StatusOK && tokenInvalid(o.code) {
		// WeChat refused the token, not the message: nothing was sent,
		// so one more try with a new token is safe.
		if tok, err = c.token(ctx, tok); err != nil {
			return channel.Receipt{}, err
		}
		o = c.send(ctx, tok, body)
	}
	now := c.now()
	if err := classify(o, now); err != nil {
		err.Err = fmt.Errorf("wechat: send: %w", scrub(err.Err, m.To))
		return channel.Receipt{}, err
	}
	return channel.Receipt{Provider: Provider, ProviderID: o.msgID, At: now.UTC()}, nil
}

// sendBody is the template send request. Data keeps m.Fields' order.
type sendBody struct {
	ToUser      string `json:"touser"`
	TemplateID  string `json:"template_id"`
	URL         string `json:"url,omitempty"`
	Data        fields `json:"data"`
	ClientMsgID string `json:"client_msg_id,omitempty"`
}

type fields []channel.Field

// MarshalJSON writes {"key":{"value":"…"},…} in the fields' order: a Go
// map would sort the keys.
func (f fields) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range f {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(kv.Key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(struct {
			Value string `json:"value"`
		}{kv.Value})
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func encode(m channel.Message, templateID, linkURL string) ([]byte, error) {
	seen := make(map[string]bool, len(m.Fields))
	for _, f := range m.Fields {
		if f.Key == "" || seen[f.Key] {
			// A JSON object with a repeated key means whatever the reader
			// makes of it: a rendering fault that no retry mends.
			return nil, fmt.Errorf("wechat: template %q: empty or repeated field key %q", m.Template, f.Key)
		}
		seen[f.Key] = true
	}
	link := m.OptOutURL
	if link == "" {
		link = linkURL
	}
	return json.Marshal(sendBody{ToUser: m.To, TemplateID: templateID, URL: link, Data: m.Fields, ClientMsgID: m.IntentID})
}

// outcome is what one call to WeChat came to.
type outcome struct {
	err        error  // the call failed without a complete response
	wrote      bool   // the request had been written when err happened
	status     int    // HTTP status
	retryAfter string // Retry-After header
	badBody    bool   // a 200 whose body is not WeChat's JSON
	code       int    // errcode
	msg        string // errmsg
	msgID      string // msgid, on success
}

func (c *Client) send(ctx context.Context, tok string, body []byte) outcome {
	var reply struct {
		Errcode int         `json:"errcode"`
		Errmsg  string      `json:"errmsg"`
		MsgID   json.Number `json:"msgid"`
	}
	o := c.post(ctx, "/cgi-bin/message/template/send?access_token="+url.QueryEscape(tok), body, &reply)
	o.code, o.msg, o.msgID = reply.Errcode, reply.Errmsg, reply.MsgID.String()
	return o
}

// post sends body as JSON to path and decodes a 200 reply into out. The
// access token travels in path: no error it returns carries the URL.
func (c *Client) post(ctx context.Context, path string, body []byte, out any) outcome {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return outcome{err: errors.New("cannot build the request")}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // drop the URL and its access token
		}
		return outcome{err: err, wrote: wrote.Load()}
	}
	defer resp.Body.Close()
	o := outcome{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), wrote: true}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		o.err = err
		return o
	}
	if resp.StatusCode == http.StatusOK && json.Unmarshal(b, out) != nil {
		o.badBody = true
	}
	return o
}

// scrub keeps the openid out of an error text WeChat composed.
func scrub(err error, openid string) error {
	if openid == "" || !strings.Contains(err.Error(), openid) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), openid, intent.MaskOpenID(openid)))
}
