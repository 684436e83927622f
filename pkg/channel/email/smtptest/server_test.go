package smtptest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// send delivers one message with go-smtp's client over STARTTLS and
// returns the server's reply code (250 on success).
func send(t *testing.T, s *Server, auth sasl.Client, to string) int {
	t.Helper()
	c, err := smtp.DialStartTLS(s.Addr(), s.TLSConfig())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return code(t, err)
		}
	}
	err = c.SendMail("bank@bank.example", []string{to}, strings.NewReader("Subject: x\r\n\r\nbody\r\n"))
	if err != nil {
		return code(t, err)
	}
	return 250
}

func code(t *testing.T, err error) int {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("not an SMTP reply: %v", err)
	}
	return se.Code
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name      string
		opts      []Option
		fault     func(*Server)
		auth      sasl.Client
		to        []string // one send each
		wantCodes []int
		wantMsgs  int
	}{
		{"accepts", nil, nil, nil, []string{"a@x.example"}, []int{250}, 1},
		{"reject rcpt, case-insensitive", nil, func(s *Server) { s.RejectRcpt("A@X.example", 550, "5.1.1 no such user") }, nil,
			[]string{"a@x.example", "b@x.example"}, []int{550, 250}, 1},
		{"fail data once", nil, func(s *Server) { s.FailData(451, 1) }, nil,
			[]string{"a@x.example", "a@x.example"}, []int{451, 250}, 1},
		{"fail data always", nil, func(s *Server) { s.FailData(554, 0) }, nil,
			[]string{"a@x.example", "a@x.example"}, []int{554, 554}, 0},
		{"reject mail", nil, func(s *Server) { s.RejectMail(550, "5.7.1 sender refused") }, nil,
			[]string{"a@x.example"}, []int{550}, 0},
		{"reset clears faults", nil, func(s *Server) { s.FailData(554, 0); s.RejectRcpt("a@x.example", 550, "x"); s.Reset() }, nil,
			[]string{"a@x.example"}, []int{250}, 1},
		{"auth required", []Option{WithAuth("u", "p")}, nil, nil, []string{"a@x.example"}, []int{530}, 0},
		{"auth wrong password", []Option{WithAuth("u", "p")}, nil, sasl.NewPlainClient("", "u", "bad"), []string{"a@x.example"}, []int{535}, 0},
		{"auth", []Option{WithAuth("u", "p")}, nil, sasl.NewPlainClient("", "u", "p"), []string{"a@x.example"}, []int{250}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer(t, tt.opts...)
			if tt.fault != nil {
				tt.fault(s)
			}
			for i, to := range tt.to {
				if got := send(t, s, tt.auth, to); got != tt.wantCodes[i] {
					t.Errorf("send %d: code %d, want %d", i, got, tt.wantCodes[i])
				}
			}
			msgs := s.Messages()
			if len(msgs) != tt.wantMsgs {
				t.Fatalf("%d messages, want %d", len(msgs), tt.wantMsgs)
			}
			for _, m := range msgs {
				if !m.TLS || m.From != "bank@bank.example" || !strings.HasPrefix(m.QueueID, "Q") || !strings.HasSuffix(string(m.Data), "body\r\n") {
					t.Errorf("recorded %+v", m)
				}
			}
		})
	}
}

func TestHangAfterDataRecordsThenWaits(t *testing.T) {
	s := NewServer(t)
	s.HangAfterData(300 * time.Millisecond)
	start := time.Now()
	if got := send(t, s, nil, "a@x.example"); got != 250 {
		t.Fatalf("code %d", got)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("the reply came after %v, want the hang", took)
	}
	if len(s.Messages()) != 1 {
		t.Errorf("the message was not recorded")
	}
}

func TestWithoutSTARTTLS(t *testing.T) {
	s := NewServer(t, WithoutSTARTTLS())
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered")
	}
	if err := c.SendMail("bank@bank.example", []string{"a@x.example"}, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Mails != 1 || st.PlainMails != 1 || st.Messages != 1 || s.Messages()[0].TLS {
		t.Errorf("stats %+v", st)
	}
}
