// Package stats holds the summaries the benchmarks report: they give
// medians, which one slow run on a busy machine does not move.
package stats

import "slices"

// Median returns the middle value of xs (the mean of the two middle ones
// for an even count), or 0 for none. xs is left as it was.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
