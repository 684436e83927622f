package main

import "testing"

func TestProviderCeiling(t *testing.T) {
	tests := []struct {
		name           string
		gate, inFlight float64
		want           float64
	}{
		{"providers the limit", 9000, 60, 60},
		{"the gate the limit", 9000, 320000, 9000},
		{"no latency: the gate", 9000, 0, 9000},
		{"ceilings skipped: in flight", 0, 60, 60},
		{"neither known", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := providerCeiling(tt.gate, tt.inFlight); got != tt.want {
				t.Errorf("providerCeiling(%v, %v) = %v, want %v", tt.gate, tt.inFlight, got, tt.want)
			}
		})
	}
}
