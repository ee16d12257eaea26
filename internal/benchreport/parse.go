package main

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// results holds the runs of each benchmark, by name without the
// -GOMAXPROCS suffix (e.g. "BenchmarkScale/servers=1000").
type results map[string][]run

// run is one result line: the iteration count and the value of each unit,
// as written (ns/op stays ns/op).
type run struct {
	n      int
	values map[string]float64 // "ns/op", "failed/op", ...
}

// confidence is the least confidence asked of the interval around each
// median. benchstat asks 95%, which takes 6 runs for an interval closed at
// both ends; at 90% the 5 runs of `make bench` (BENCH_COUNT) have one:
// their lowest to their highest, at 94% confidence.
const confidence = 0.90

// parse reads `go test -bench` output with benchfmt. Lines that are not
// results (headers, logs, PASS) are skipped, and so are the result lines of
// a benchmark that failed or was skipped ("BenchmarkX-2 --- FAIL: ...").
// Any other result line benchfmt cannot read (a value that is not a number,
// a value without its unit) is an error, since it would silently drop a
// figure. file names the input in errors.
func parse(r io.Reader, file string) (results, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	lines := bytes.Split(raw, []byte("\n"))
	res := results{}
	br := benchfmt.NewReader(bytes.NewReader(raw), file)
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.Result:
			ru := run{n: rec.Iters, values: map[string]float64{}}
			for _, v := range rec.Values {
				if v.OrigUnit != "" { // benchfmt tidied it, e.g. ns/op to sec/op
					ru.values[v.OrigUnit] = v.OrigValue
				} else {
					ru.values[v.Unit] = v.Value
				}
			}
			name := benchName(rec.Name)
			res[name] = append(res[name], ru)
		case *benchfmt.SyntaxError:
			if rec.Line < 1 || rec.Line > len(lines) {
				return nil, rec
			}
			line := bytes.TrimSpace(lines[rec.Line-1])
			if f := bytes.Fields(line); len(f) >= 2 && bytes.HasPrefix(f[1], []byte("---")) {
				continue // --- FAIL or --- SKIP: no figures
			}
			return nil, fmt.Errorf("%w: %s", rec, line)
		}
	}
	return res, br.Err()
}

// benchName is the full name of a benchmark without its -GOMAXPROCS
// suffix: benchfmt's name lacks the "Benchmark" prefix.
func benchName(n benchfmt.Name) string {
	base, parts := n.Parts()
	name := "Benchmark" + string(base)
	for _, p := range parts {
		if p[0] != '-' {
			name += string(p)
		}
	}
	return name
}

// median returns the median of unit over the runs of name, with its
// confidence interval (Lo and Hi are infinite when there are too few runs
// for one); ok is false when no run reported unit.
func (r results) median(name, unit string) (s benchmath.Summary, ok bool) {
	return summarize(r.values(name, unit, false))
}

// total returns the median over the runs of name of unit (a per-op value)
// times the run's iteration count: the figure for the whole run, e.g. the
// failed requests in 20 switches. Its interval is that of the totals.
func (r results) total(name, unit string) (s benchmath.Summary, ok bool) {
	return summarize(r.values(name, unit, true))
}

// summarize is benchmath's median with no assumption on the distribution
// of the runs, the one benchstat uses.
func summarize(xs []float64) (benchmath.Summary, bool) {
	if len(xs) == 0 {
		return benchmath.Summary{}, false
	}
	sample := benchmath.NewSample(xs, &benchmath.DefaultThresholds)
	return benchmath.AssumeNothing.Summary(sample, confidence), true
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

// maxTotal returns the largest over the runs of name of unit (a per-op
// value) times the run's iteration count: the worst run's figure.
func (r results) maxTotal(name, unit string) (m float64, ok bool) {
	xs := r.values(name, unit, true)
	if len(xs) == 0 {
		return 0, false
	}
	return slices.Max(xs), true
}
