package didyoumean

import (
	"slices"
	"strings"
)

// MaxDistance is the largest edit distance at which a name is still
// offered for another.
const MaxDistance = 2

// Closest returns the names nearest to s: those at the smallest edit
// distance from it if that is at most MaxDistance, otherwise those that
// begin with s (an abbreviation); sorted, without duplicates, and without
// s itself. It returns nil when no name is near.
func Closest(s string, names []string) []string {
	best, bestD := []string(nil), MaxDistance+1
	var prefixed []string
	for _, n := range names {
		if n == s || n == "" {
			continue
		}
		switch d := Distance(s, n); {
		case d > MaxDistance:
		case d < bestD:
			best, bestD = []string{n}, d
		case d == bestD:
			best = append(best, n)
		}
		if s != "" && strings.HasPrefix(n, s) {
			prefixed = append(prefixed, n)
		}
	}
	if best == nil {
		best = prefixed
	}
	slices.Sort(best)
	return slices.Compact(best)
}

// Distance is the Levenshtein distance between a and b: the fewest byte
// insertions, deletions and substitutions that turn one into the other.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
