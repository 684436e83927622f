package policy

import "github.com/contactd/dispatcher/pkg/status"

// SendSources maps every rule that could have blocked a send on channel to
// its legal source, as source gives it: the rules the gate evaluated for the
// channel (every channel's when channel is ""), the built-in opt-out and
// do-not-contact checks, and expires_at when the intent has one. The worker
// publishes it with a send, the preview answers it, and the API fills it in
// from the deciding profile version.
func SendSources(checks []status.Check, channel string, expires bool, source func(id string) string) map[string]string {
	out := make(map[string]string, len(checks)+3)
	for _, c := range checks {
		if channel == "" || c.Channel == channel {
			out[c.Rule] = source(c.Rule)
		}
	}
	ids := []string{RuleOptOut, RuleDoNotContact}
	if expires {
		ids = append(ids, RuleExpiresAt)
	}
	for _, id := range ids {
		out[id] = source(id)
	}
	return out
}
