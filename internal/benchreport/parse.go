package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/edgeswitch/edgeswitch/internal/stats"
)

// results holds the runs of each benchmark, by name without the
// -GOMAXPROCS suffix (e.g. "BenchmarkScale/servers=1000").
type results map[string][]run

// run is one result line: the iteration count and the value of each unit.
type run struct {
	n      int
	values map[string]float64 // "ns/op", "failed/op", ...
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads `go test -bench` output. Lines that are not results (headers,
// logs, PASS) are skipped; a result line with a value that is not a number
// is an error, since it would silently drop a figure.
func parse(r io.Reader) (results, error) {
	res := results{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || len(f)%2 != 0 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue // e.g. "BenchmarkX-2 --- FAIL: ..."
		}
		ru := run{n: n, values: map[string]float64{}}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q of %s is not a number", f[0], f[i], f[i+1])
			}
			ru.values[f[i+1]] = v
		}
		name := procsSuffix.ReplaceAllString(f[0], "")
		res[name] = append(res[name], ru)
	}
	return res, sc.Err()
}

// median returns the median of unit over the runs of name; ok is false
// when no run reported it.
func (r results) median(name, unit string) (m float64, ok bool) {
	xs := r.values(name, unit, false)
	return stats.Median(xs), len(xs) > 0
}

// total returns the median over the runs of name of unit (a per-op value)
// times the run's iteration count: the figure for the whole run, e.g. the
// failed requests in 20 switches.
func (r results) total(name, unit string) (m float64, ok bool) {
	xs := r.values(name, unit, true)
	return stats.Median(xs), len(xs) > 0
}

// values returns unit from each run of name that reported it, times the
// run's iteration count if perRun.
func (r results) values(name, unit string, perRun bool) []float64 {
	var xs []float64
	for _, ru := range r[name] {
		if v, has := ru.values[unit]; has {
			if perRun {
				v *= float64(ru.n)
			}
			xs = append(xs, v)
		}
	}
	return xs
}

// max returns the largest value of unit over the runs of name.
func (r results) max(name, unit string) (m float64, ok bool) {
	xs := r.values(name, unit, false)
	if len(xs) == 0 {
		return 0, false
	}
	return slices.Max(xs), true
}
