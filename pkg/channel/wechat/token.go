package wechat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/contactd/dispatcher/pkg/channel"
)

// TokenStore keeps an account's access token in Redis, where every replica
// reads it, and the short lock that lets one replica at a time fetch a new
// one. Keys, per app id:
//
//	<prefix>wechat:token:<appid>       JSON {token, expires, refresh} (unix ms), expiring with the token
//	<prefix>wechat:token-lock:<appid>  the refreshing replica's random id, SET NX PX
//
// Each command touches one key, so Redis Cluster needs no hash tag.
type TokenStore struct {
	rdb    redis.UniversalClient
	prefix string
	poll   time.Duration // wait between looks while another replica refreshes
	polls  int           // looks before giving up
}

// NewTokenStore returns a store over rdb with keys under prefix.
func NewTokenStore(rdb redis.UniversalClient, prefix string) *TokenStore {
	return &TokenStore{rdb: rdb, prefix: prefix, poll: 50 * time.Millisecond, polls: 10}
}

func (s *TokenStore) key(appID string) string     { return s.prefix + "wechat:token:" + appID }
func (s *TokenStore) lockKey(appID string) string { return s.prefix + "wechat:token-lock:" + appID }

// stored is a token as kept in Redis.
type stored struct {
	Token   string `json:"token"`
	Expires int64  `json:"expires"` // unix ms: WeChat stops taking it
	Refresh int64  `json:"refresh"` // unix ms: fetch its successor from then on
}

func (t stored) fresh(now time.Time) bool  { return now.UnixMilli() < t.Refresh }
func (t stored) usable(now time.Time) bool { return now.UnixMilli() < t.Expires }

func (s *TokenStore) load(ctx context.Context, appID string) (stored, bool, error) {
	b, err := s.rdb.Get(ctx, s.key(appID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return stored{}, false, nil
	}
	if err != nil {
		return stored{}, false, err
	}
	var t stored
	if err := json.Unmarshal(b, &t); err != nil || t.Token == "" {
		return stored{}, false, nil // unreadable: as good as absent
	}
	return t, true, nil
}

func (s *TokenStore) save(ctx context.Context, appID string, t stored, ttl time.Duration) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.rdb.Set(ctx, s.key(appID), b, ttl).Err()
}

// lock takes the refresh lock for ttl; owner is needed to give it back.
func (s *TokenStore) lock(ctx context.Context, appID string, ttl time.Duration) (owner string, ok bool, err error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	owner = hex.EncodeToString(b[:])
	ok, err = s.rdb.SetNX(ctx, s.lockKey(appID), owner, ttl).Result()
	return owner, ok, err
}

// unlock deletes KEYS[1] if it still holds ARGV[1], so a holder whose lock
// expired cannot release the next holder's.
//
// KEYS[1]  the lock
// ARGV[1]  the owner id given by lock
//
// Returns 1 if released, 0 if the lock was no longer held.
var unlock = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (s *TokenStore) unlock(ctx context.Context, appID, owner string) {
	// An error leaves the lock to expire on its own.
	_ = unlock.Run(ctx, s.rdb, []string{s.lockKey(appID)}, owner).Err()
}

func storeErr(err error) error {
	return &channel.Error{Kind: channel.Retryable, Code: "token_store", Err: fmt.Errorf("wechat: access token store: %w", err)}
}

// token returns an access token to send with. rejected, if set, is a token
// WeChat just refused (40001, 40014, 42001): it is not returned again.
func (c *Client) token(ctx context.Context, rejected string) (string, error) {
	s, app := c.tokens, c.cfg.AppID
	t, ok, err := s.load(ctx, app)
	if err != nil {
		return "", storeErr(err)
	}
	if ok && t.Token != rejected && t.fresh(c.now()) {
		return t.Token, nil
	}
	for i := 0; ; i++ {
		// The lock outlives the two token requests a refresh may make, so
		// it cannot lapse while its holder still waits for WeChat.
		owner, got, err := s.lock(ctx, app, 2*c.cfg.Timeout+time.Second)
		if err != nil {
			return "", storeErr(err)
		}
		if got {
			tok, err := c.refresh(ctx, rejected)
			s.unlock(context.WithoutCancel(ctx), app, owner)
			return tok, err
		}
		if ok && t.Token != rejected && t.usable(c.now()) {
			// Another replica is replacing a token that still works:
			// no need to wait for it.
			return t.Token, nil
		}
		if i == s.polls {
			break
		}
		select {
		case <-ctx.Done():
			return "", &channel.Error{Kind: channel.Retryable, Code: channel.TransportCode(ctx.Err()), Err: fmt.Errorf("wechat: waiting for an access token: %w", ctx.Err())}
		case <-time.After(s.poll):
		}
		if t, ok, err = s.load(ctx, app); err != nil {
			return "", storeErr(err)
		}
		if ok && t.Token != rejected && t.fresh(c.now()) {
			return t.Token, nil
		}
	}
	// Another replica is still at it, and there is no token to use.
	return "", &channel.Error{Kind: channel.Retryable, Code: "token_busy", Err: errors.New("wechat: another replica is still fetching the access token")}
}

// refresh fetches a new token, holding the lock.
func (c *Client) refresh(ctx context.Context, rejected string) (string, error) {
	s, app := c.tokens, c.cfg.AppID
	// Another replica may have refreshed between our look and our lock.
	old, ok, err := s.load(ctx, app)
	if err != nil {
		return "", storeErr(err)
	}
	if ok && old.Token != rejected && old.fresh(c.now()) {
		return old.Token, nil
	}
	t, ttl, err := c.fetch(ctx, false)
	if err != nil {
		if ok && old.Token != rejected && old.usable(c.now()) {
			return old.Token, nil // early refresh failed; the old token still works
		}
		return "", err
	}
	if rejected != "" && t.Token == rejected {
		// Normal mode hands back the very token WeChat just refused, so
		// only a forced refresh replaces it. A forced refresh invalidates
		// the token every replica holds and WeChat allows 20 a day, 30 s
		// apart: it is made here alone, under the lock, once.
		if t, ttl, err = c.fetch(ctx, true); err != nil {
			return "", err
		}
		if t.Token == rejected {
			return "", &channel.Error{Kind: channel.Retryable, Code: "token_rejected",
				Err: errors.New("wechat: WeChat refuses the access token it keeps handing out")}
		}
	}
	if err := s.save(ctx, app, t, ttl); err != nil {
		return "", storeErr(err)
	}
	return t.Token, nil
}

// fetch asks stable_token for the account's token. force_refresh true
// invalidates the current token for every replica: see refresh.
func (c *Client) fetch(ctx context.Context, force bool) (stored, time.Duration, error) {
	body, err := json.Marshal(map[string]any{
		"grant_type": "client_credential", "appid": c.cfg.AppID, "secret": c.cfg.Secret, "force_refresh": force,
	})
	if err != nil {
		return stored{}, 0, err
	}
	var reply struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Errcode     int    `json:"errcode"`
		Errmsg      string `json:"errmsg"`
	}
	o := c.post(ctx, "/cgi-bin/stable_token", body, &reply)
	// Whatever went wrong, no message was sent: every failure here is
	// Retryable, and a lasting one (a wrong secret) opens the breaker.
	fail := func(code string, err error) (stored, time.Duration, error) {
		return stored{}, 0, &channel.Error{Kind: channel.Retryable, Code: code, Err: fmt.Errorf("wechat: access token: %w", err)}
	}
	switch {
	case o.err != nil:
		return fail(channel.TransportCode(o.err), o.err)
	case o.status != http.StatusOK:
		return fail(fmt.Sprintf("http_%d", o.status), fmt.Errorf("HTTP %d", o.status))
	case o.badBody:
		return fail("bad_reply", errors.New("the reply is not WeChat's JSON"))
	case reply.Errcode != 0:
		return fail(fmt.Sprint(reply.Errcode), fmt.Errorf("errcode %d: %s", reply.Errcode, clip(reply.Errmsg)))
	case reply.AccessToken == "" || reply.ExpiresIn <= 0:
		return fail("bad_reply", errors.New("no token or no lifetime in the reply"))
	}
	now := c.now()
	life := time.Duration(reply.ExpiresIn) * time.Second
	// Refresh RefreshBefore ahead of expiry, but never in the first half
	// of a token's life: a token handed out again with little time left
	// would otherwise be fetched anew on every send.
	early := max(life-c.cfg.RefreshBefore, life/2)
	return stored{
		Token:   reply.AccessToken,
		Expires: now.Add(life).UnixMilli(),
		Refresh: now.Add(early).UnixMilli(),
	}, life, nil
}
