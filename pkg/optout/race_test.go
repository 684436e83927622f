//go:build race

package optout

// raceEnabled: the race detector adds allocations of its own.
const raceEnabled = true
