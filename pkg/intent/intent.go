// Package intent owns the reminder intent: the message upstream systems put on
// reminders.intents (or POST to /v1/intents), its decoding and its validation.
// A producer may import this package to validate before it sends.
package intent

import "time"

// Channel is a way to reach a debtor.
type Channel string

// The channels the dispatcher knows.
const (
	SMS    Channel = "sms"
	Voice  Channel = "voice"
	Email  Channel = "email"
	WeChat Channel = "wechat"
)

// Channels lists every known channel, in the order they are documented.
var Channels = []Channel{SMS, Voice, Email, WeChat}

// Known reports whether c is a channel the dispatcher can send on.
func (c Channel) Known() bool {
	switch c {
	case SMS, Voice, Email, WeChat:
		return true
	}
	return false
}

// Locales the templates are written in.
var Locales = []string{"zh-CN", "en"}

// MaxSize is the largest encoded intent accepted, in bytes.
const MaxSize = 64 << 10

// Intent asks the dispatcher to remind one debtor of one debt, on the first of
// its channels that policy allows. ID is the idempotency key: an intent id is
// sent at most once, however often it is delivered.
type Intent struct {
	ID        string            `json:"id"`
	DebtorID  string            `json:"debtor_id"`
	DebtID    string            `json:"debt_id,omitempty"`
	Template  string            `json:"template"`
	Locale    string            `json:"locale"`
	Channels  []Channel         `json:"channels"`
	Fallback  bool              `json:"fallback,omitempty"`
	To        Address           `json:"to"`
	Params    map[string]string `json:"params,omitempty"`
	Timezone  string            `json:"timezone,omitempty"`
	NotBefore *time.Time        `json:"not_before,omitempty"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
}

// Address holds where each channel reaches the debtor. Personal data: never
// logged, masked wherever shown.
type Address struct {
	Phone        string `json:"phone,omitempty"`
	Email        string `json:"email,omitempty"`
	WeChatOpenID string `json:"wechat_openid,omitempty"`
}

// For returns the address the channel sends to, or "".
func (a Address) For(c Channel) string {
	switch c {
	case SMS, Voice:
		return a.Phone
	case Email:
		return a.Email
	case WeChat:
		return a.WeChatOpenID
	}
	return ""
}

// TemplateSpec describes what a template needs from an intent.
type TemplateSpec struct {
	Locales  []string  // locales it is written in
	Channels []Channel // channels it has wording for
	Params   []string  // params every rendering needs
	// Types maps a param to its type (ParamText, ParamMoney, ParamDate).
	// The catalog types every param; one without a type gets only the
	// checks every param value gets.
	Types map[string]string
}

// Templates looks template specs up by name; the catalog implements it.
type Templates interface {
	Spec(name string) (TemplateSpec, bool)
}
