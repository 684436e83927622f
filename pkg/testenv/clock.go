package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// clockHook fails a test whose code asks Redis for its wall clock or sets an
// absolute expiry. Tests pin their dates and hand the code that clock; the
// Redis server runs on the real one. A relative TTL (EXPIRE, PEXPIRE, SET PX)
// means the same on both, but TIME, EXPIREAT, PEXPIREAT and SET/GETEX with
// EXAT/PXAT mix the two clocks: such code passes on the day its test was
// written and fails once the real date has moved past the pinned one, or is
// wrong in production by the skew between hosts. Every client testenv.Redis
// returns carries this hook; the Lua scripts are checked for the same
// commands by pkg/store's tests.
type clockHook struct{ t testing.TB }

func (h clockHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h clockHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.check(cmd)
		if err := h.shared(cmd); err != nil {
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h clockHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.check(c)
			if err := h.shared(c); err != nil {
				c.SetErr(err)
				return err
			}
		}
		return next(ctx, cmds)
	}
}

func (h clockHook) check(cmd redis.Cmder) {
	if what := AbsoluteClock(cmd.Args()); what != "" {
		h.t.Errorf("redis command %s %s: use a relative TTL or the time the code is handed", strings.ToUpper(cmd.Name()), what)
	}
}

// shared refuses, without running it, a command that would empty the
// server: other tests (other packages run at once) keep their keys on it
// under their own prefixes. A test that loses its state deletes its prefix.
func (h clockHook) shared(cmd redis.Cmder) error {
	switch strings.ToLower(cmd.Name()) {
	case "flushall", "flushdb":
		h.t.Errorf("redis command %s on the shared test server: delete this test's prefix instead", strings.ToUpper(cmd.Name()))
		return errors.New("testenv: " + cmd.Name() + " refused on the shared test Redis")
	}
	return nil
}

// AbsoluteClock says how a Redis command depends on the server's wall clock
// ("reads the server's clock", "sets an absolute expiry"), or "" if it does
// not.
func AbsoluteClock(args []any) string {
	if len(args) == 0 {
		return ""
	}
	name, _ := args[0].(string)
	switch strings.ToLower(name) {
	case "time":
		return "reads the server's clock"
	case "expireat", "pexpireat":
		return "sets an absolute expiry"
	case "set", "getex":
		for _, a := range args[1:] {
			if s, ok := a.(string); ok && (strings.EqualFold(s, "exat") || strings.EqualFold(s, "pxat")) {
				return "sets an absolute expiry"
			}
		}
	}
	return ""
}

var _ redis.Hook = clockHook{}
