package intent

import (
	"strings"
	"testing"
)

func TestMaskPhone(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"mainland mobile", "+8613800138000", "+86138****8000"},
		{"US: half of 10 digits", "+14155552671", "+14*****2671"},
		{"UK: half of 10 digits", "+442079460000", "+442*****0000"},
		{"3-digit calling code, 8 digits", "+85291234567", "+852****4567"},
		{"German mobile, 11 digits", "+4915112345678", "+49151****5678"},
		{"long national number", "+4930123456789012", "+49301*******9012"},
		{"short number keeps less", "+8612345", "+86***45"},
		{"one national digit", "+86 1", "+86*"},
		{"no calling code", "+0123456", "+****456"},
		{"national form", "13800138000", "138****8000"},
		{"punctuation dropped", "+86 138-0013-8000", "+86138****8000"},
		{"letters dropped", "zhang@example.cn 138", "**8"},
		{"no digits", "zhang@example.cn", "****"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaskPhone(tt.in); got != tt.want {
				t.Errorf("MaskPhone(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestMaskPhoneShowsLittle checks, for every length, that a short national
// number shows at most half its digits and a long one hides at least four.
func TestMaskPhoneShowsLittle(t *testing.T) {
	for n := 1; n <= 17; n++ {
		national := strings.Repeat("7", n)
		got := MaskPhone("+86" + national)
		hidden := strings.Count(got, "*")
		shown := n - hidden
		if !strings.HasPrefix(got, "+86") || len(got) != 3+n {
			t.Errorf("%d digits: %q", n, got)
		}
		if n < 11 && shown > n/2 || n >= 11 && (hidden < 4 || shown > 7) {
			t.Errorf("%d digits: %q shows %d", n, got, shown)
		}
	}
}

func TestMaskEmail(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"address", "zhang@example.cn", "z***@example.cn"},
		{"length not shown", "zhangsanfeng@example.cn", "z***@example.cn"},
		{"one-character local part", "z@example.cn", "***@example.cn"},
		{"non-ASCII local part", "张三@example.cn", "张***@example.cn"},
		{"last @ splits", `"a@b"@example.cn`, `"***@example.cn`},
		{"no @", "zhang.example.cn", "***"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaskEmail(tt.in); got != tt.want {
				t.Errorf("MaskEmail(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMaskOpenID(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"12 characters", "oX1abcdef123", "oX1***123"},
		{"28 characters", "oX1abcdefghijklmnopqrstu_789", "oX1***789"},
		{"8 characters keep 2 each", "oX1abc89", "oX***89"},
		{"6 characters keep 1 each", "oX1ab9", "o***9"},
		{"shorter keeps nothing", "oX1a9", "***"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaskOpenID(tt.in); got != tt.want {
				t.Errorf("MaskOpenID(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMaskAddress(t *testing.T) {
	tests := []struct {
		name string
		c    Channel
		addr string
		want string
	}{
		{"sms", SMS, "+8613800138000", "+86138****8000"},
		{"voice", Voice, "+8613800138000", "+86138****8000"},
		{"email", Email, "zhang@example.cn", "z***@example.cn"},
		{"wechat", WeChat, "oX1abcdef123", "oX1***123"},
		{"unknown channel hides all", "fax", "+8613800138000", "***"},
		{"unknown channel, empty", "fax", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaskAddress(tt.c, tt.addr); got != tt.want {
				t.Errorf("MaskAddress(%q, %q) = %q, want %q", tt.c, tt.addr, got, tt.want)
			}
		})
	}
}

func TestAddressMasked(t *testing.T) {
	tests := []struct {
		name string
		in   Address
		want Address
	}{
		{"all", validIntent().To, Address{Phone: "+86138****8000", Email: "z***@example.cn", WeChatOpenID: "oX1***123"}},
		{"empty stays empty", Address{Email: "zhang@example.cn"}, Address{Email: "z***@example.cn"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Masked(); got != tt.want {
				t.Errorf("Masked() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
