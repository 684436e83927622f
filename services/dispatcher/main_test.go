package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary stand in for the dispatcher binary: the
// restart tests start it as a separate process with DISPATCHER_BE_MAIN=1
// and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("DISPATCHER_BE_MAIN") == "1" {
		ctx, stop := signalContext()
		defer stop()
		if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
			os.Stderr.WriteString("dispatcher: " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
