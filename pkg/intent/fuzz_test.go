package intent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzDecodeValidate checks that no input makes Decode or Validate panic,
// that every rejection is a bounded one-line *Error, and that an accepted
// intent survives json.Marshal and Decode unchanged.
func FuzzDecodeValidate(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := Decode(b)
		if err != nil {
			checkInvalid(t, err)
			if n := len(fieldErrors(t, err)); n != 1 {
				t.Fatalf("Decode gave %d field errors", n)
			}
			return
		}
		if err := in.Validate(nil); err != nil {
			checkInvalid(t, err)
		}
		if err := in.Validate(templates); err != nil {
			checkInvalid(t, err)
			return
		}
		out, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Marshal(%+v)) = %v\n%s", in, err, out)
		}
		if !equalIntents(in, again) {
			t.Fatalf("round trip changed the intent:\n%+v\n%+v", in, again)
		}
		if err := again.Validate(templates); err != nil {
			t.Fatalf("round trip made the intent invalid: %v", err)
		}
	})
}

func checkInvalid(t *testing.T, err error) {
	t.Helper()
	if !IsInvalid(err) {
		t.Fatalf("%v (%T) is not an *Error", err, err)
	}
	msg := err.Error()
	if len(msg) > maxErrorLen || strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "invalid intent") {
		t.Fatalf("bad message %q", msg)
	}
	for _, f := range fieldErrors(t, err) {
		if f.Code == "" || f.Message == "" {
			t.Fatalf("incomplete %+v", f)
		}
	}
}

// TestFuzzSeeds checks that the seed corpus covers both sides: the seeds
// named valid* are accepted, the other named ones rejected. Files the
// fuzzer wrote (named by a hash) are regression inputs for the fuzz target
// only.
func TestFuzzSeeds(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzDecodeValidate/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		if strings.Trim(name, "0123456789abcdef") == "" {
			continue
		}
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			header, lit, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
			if header != "go test fuzz v1" || !strings.HasPrefix(lit, "[]byte(") || !strings.HasSuffix(lit, ")") {
				t.Fatalf("not a corpus file: %.60q", raw)
			}
			s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lit, "[]byte("), ")"))
			if err != nil {
				t.Fatal(err)
			}
			in, err := Decode([]byte(s))
			if err == nil {
				err = in.Validate(templates)
			}
			if valid := strings.HasPrefix(name, "valid"); valid != (err == nil) {
				t.Errorf("valid seed %v, Decode+Validate: %v", valid, err)
			}
		})
	}
}
