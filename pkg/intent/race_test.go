//go:build race

package intent

// raceEnabled: the race detector adds allocations of its own.
const raceEnabled = true
