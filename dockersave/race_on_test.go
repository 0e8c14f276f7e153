//go:build race

package dockersave

// raceEnabled: the race detector makes the decompressors several times
// slower, too slow for a test that inflates a gigabyte.
const raceEnabled = true
