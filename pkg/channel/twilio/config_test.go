package twilio

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{AccountSID: testSID, AuthToken: testToken, From: testFrom}
	cases := []struct {
		name string
		edit func(*Config)
		want string // a part of the error; "" for none
	}{
		{name: "minimal", edit: func(*Config) {}},
		{name: "messaging service instead of From", edit: func(c *Config) { c.From, c.MessagingServiceSID = "", testService }},
		{name: "all URLs absolute", edit: func(c *Config) { c.BaseURL, c.StatusCallbackURL = "http://127.0.0.1:9", testHook }},
		{name: "no account SID", edit: func(c *Config) { c.AccountSID = "" }, want: "account SID is required"},
		{name: "no auth token", edit: func(c *Config) { c.AuthToken = "" }, want: "auth token is required"},
		{name: "auth token with symbols", edit: func(c *Config) { c.AuthToken = "s3cret/+=" }, want: "auth token must be"},
		{name: "neither From nor messaging service", edit: func(c *Config) { c.From = "" }, want: "From or MessagingServiceSID"},
		{name: "relative base URL", edit: func(c *Config) { c.BaseURL = "/twilio" }, want: "base URL"},
		{name: "status callback not http", edit: func(c *Config) { c.StatusCallbackURL = "ftp://x.example/status" }, want: "status callback URL"},
		{name: "negative timeout", edit: func(c *Config) { c.Timeout = -time.Second }, want: "negative timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an error with %q", err, tc.want)
			}
			if err != nil && c.AuthToken != "" && strings.Contains(err.Error(), c.AuthToken) {
				t.Errorf("error %q shows the auth token", err)
			}
		})
	}
}
