//go:build !race

package dockersave

const raceEnabled = false
