package store

// Per-number state lives in the number's own hash slot, "{n:<digest>}",
// whoever the number belongs to: the contact streams of rules scoped to
// the number, the reservations the gate holds on them while it decides, an
// SMS keyword opt-out of the number, and the inbound messages already
// applied. The digest is the number's AddressDigest: keys never carry the
// number.

// NumberSlot is the key prefix, hash tag included, of a number's state.
func (k Keys) NumberSlot(digest string) string { return k.Prefix + "{n:" + digest + "}" }

// NumberOptOuts is the hash of a number's own opt-outs (field: the channel,
// "sms"; value: the opt-out as JSON), set by a keyword reply from it and
// read by the gate for every debtor messaged at it.
func (k Keys) NumberOptOuts(digest string) string { return k.NumberSlot(digest) + ":optouts" }

// NumberPending is the hash of the gate's reservations on a number's
// streams not yet settled: field the intent id, value "<owner>|<hold end,
// unix ms>".
func (k Keys) NumberPending(digest string) string { return k.NumberSlot(digest) + ":pending" }

// Inbound marks one inbound message (Twilio's MessageSid) from a number as
// applied.
func (k Keys) Inbound(digest, messageID string) string {
	return k.NumberSlot(digest) + ":in:" + messageID
}

// Digest is the keyed digest of a contact address (Keys.AddressDigest under
// this store's key).
func (s *Store) Digest(addr string) string { return s.keys.AddressDigest(addr) }
