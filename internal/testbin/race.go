//go:build race

package testbin

// raceEnabled: the tests run with the race detector, and so does the
// binary they start, so that its concurrency is checked too.
const raceEnabled = true
