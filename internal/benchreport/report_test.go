package main

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/perf/benchmath"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden.md")

var testMachine = machine{
	Date: "2026-11-24", CPU: "AMD EPYC", OS: "Debian GNU/Linux 12 (bookworm)", Kernel: "6.1.0",
	Systemd: "252", Nginx: "1.22.1", Go: "go1.26.8", Cores: 2, MemGiB: 23.5,
}

func TestParse(t *testing.T) {
	in := `goos: linux
BenchmarkSwitchOverhead-2   	      20	 942170245 ns/op	       220.1 edgeswitch-ms	         0.8783 ratio
--- BENCH: BenchmarkSwitchOverhead-2
    bench_e2e_test.go:77: BenchmarkNotAResult 1 2 3
BenchmarkScale/servers=1000-16	5	58218849 ns/op	14.40 edgeswitch-ms/op
BenchmarkSwitchOverhead-2   	      20	 950000000 ns/op	       230.0 edgeswitch-ms	         1.1 ratio
BenchmarkFailedRequests/strategy=naive/method=GET-2   	--- FAIL: BenchmarkFailedRequests/strategy=naive/method=GET-2
PASS
`
	got, err := parse(strings.NewReader(in), "in")
	if err != nil {
		t.Fatal(err)
	}
	want := results{
		"BenchmarkSwitchOverhead": {
			{n: 20, values: map[string]float64{"ns/op": 942170245, "edgeswitch-ms": 220.1, "ratio": 0.8783}},
			{n: 20, values: map[string]float64{"ns/op": 950000000, "edgeswitch-ms": 230.0, "ratio": 1.1}},
		},
		"BenchmarkScale/servers=1000": {{n: 5, values: map[string]float64{"ns/op": 58218849, "edgeswitch-ms/op": 14.40}}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(run{})); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
	if m, _ := got.median("BenchmarkSwitchOverhead", "ratio"); math.Abs(m.Center-(0.8783+1.1)/2) > 1e-12 {
		t.Errorf("median ratio = %v, want the mean of the two", m.Center)
	}
	if _, ok := got.median("BenchmarkSwitchOverhead", "hand-ms"); ok {
		t.Error("median of a unit no run reported: want ok false")
	}
}

func TestParseRefusesAValueThatIsNotANumber(t *testing.T) {
	_, err := parse(strings.NewReader("goos: linux\nBenchmarkX-2\t20\t12 ns/op\tNaN? ratio\n"), "bench.txt")
	if err == nil || !strings.Contains(err.Error(), "bench.txt:2: parsing measurement") || !strings.Contains(err.Error(), "NaN? ratio") {
		t.Errorf("got %v, want an error naming the file, the line and what it holds", err)
	}
}

// TestMedianInterval: 5 runs are the fewest with an interval at 90%, from
// the lowest to the highest; with 4 it is open at one end and not shown.
func TestMedianInterval(t *testing.T) {
	res, err := parse(strings.NewReader(`BenchmarkB-2	20	1 failed/op
BenchmarkB-2	20	0.05 failed/op
BenchmarkB-2	20	0.15 failed/op
BenchmarkB-2	20	0.35 failed/op
BenchmarkB-2	20	1.1 failed/op
BenchmarkFew-2	20	1 failed/op
BenchmarkFew-2	20	2 failed/op
BenchmarkFew-2	20	3 failed/op
BenchmarkFew-2	20	4 failed/op
`), "in")
	if err != nil {
		t.Fatal(err)
	}
	s, _ := res.total("BenchmarkB", "failed/op")
	if s.Center != 7 || s.Lo != 1 || s.Hi != 22 || s.Confidence < confidence {
		t.Errorf("total over 5 runs = %+v, want 7 in [1, 22] at >= %v", s, confidence)
	}
	if got := withCI(s, fixed(0), " failed"); got != "7 failed (1–22)" {
		t.Errorf("withCI = %q", got)
	}
	few, _ := res.median("BenchmarkFew", "failed/op")
	if !math.IsInf(few.Lo, -1) && !math.IsInf(few.Hi, 1) {
		t.Errorf("median over 4 runs = %+v, want an interval open at one end at least", few)
	}
	if got := withCI(few, fixed(1), ""); got != "2.5" {
		t.Errorf("withCI without an interval = %q, want the median alone", got)
	}
	if got := withCI(benchmath.Summary{Center: 100, Lo: 100, Hi: 100.01}, fixed(0), " ms"); got != "100 ms" {
		t.Errorf("withCI of runs alike = %q, want the median alone", got)
	}
}

func TestTotalScalesByIterations(t *testing.T) {
	res := results{"B": {{n: 20, values: map[string]float64{"failed/op": 0.15}}, {n: 20, values: map[string]float64{"failed/op": 0.05}}, {n: 20, values: map[string]float64{"failed/op": 0.3}}}}
	if got, _ := res.total("B", "failed/op"); got.Center != 3 {
		t.Errorf("total = %v, want 3 (median 0.15 per op x 20 ops)", got.Center)
	}
}

// TestReport renders testdata/bench.txt; -update rewrites the golden file.
func TestReport(t *testing.T) {
	got := render(t, "testdata/bench.txt")
	golden := filepath.Join("testdata", "report.golden.md")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("report differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestMissedTargetsSayWhatWouldCloseThem(t *testing.T) {
	raw, err := os.ReadFile("testdata/bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	worse := strings.NewReplacer(
		"0.8783 ratio", "1.5 ratio", "1.010 ratio", "1.4 ratio", "0.9100 ratio", "1.3 ratio", "0.8900 ratio", "1.45 ratio", "0.9400 ratio", "1.35 ratio",
		"edgeswitch/method=GET-2         	      20	 289133991 ns/op	         0 failed/op",
		"edgeswitch/method=GET-2         	      20	 289133991 ns/op	         0.1 failed/op",
		"edgeswitch/method=POST-2        	      20	 291786438 ns/op	         0 failed/op",
		"edgeswitch/method=POST-2        	      20	 291786438 ns/op	         0.5 failed/op",
		"0.3000 failed/op", "0 failed/op",
		// socket mode: one failed POST on the machine, and a switch that
		// takes more than half of reload mode's
		"0 failed/op	      1985 requests/op", "0.05 failed/op	      1985 requests/op",
		"0.2710 ratio", "0.61 ratio", "0.2650 ratio", "0.58 ratio", "0.2840 ratio", "0.66 ratio", "0.2720 ratio", "0.60 ratio", "0.2760 ratio", "0.63 ratio",
	).Replace(string(raw))
	res, err := parse(strings.NewReader(worse), "worse")
	if err != nil {
		t.Fatal(err)
	}
	out := (&report{res: res, m: testMachine}).render()
	for _, want := range []string{
		"| switch overhead, edgeswitch over hand-written, ≤ 1.2 | 1.40 (1.30–1.50) | **missed** |",
		"**Missed: switch overhead, edgeswitch over hand-written, ≤ 1.2.** The step durations",
		"| no GET fails during edgeswitch switches (reload mode), sandbox edge | 2 | **missed** |",
		"**Missed: no GET fails during edgeswitch switches (reload mode), sandbox edge.** A GET that fails",
		"| POSTs failed during edgeswitch switches (reload mode), against bare reloads of the same nginx unit, sandbox edge | 2 vs 0 | **missed** |",
		"The careful hand-written switch, the same sequence, loses as many (5)",
		"| socket mode: no request of any method fails, Debian's nginx.service (every run) | GET 0, POST 1; worst run 1 | **missed** |",
		"**Missed: socket mode: no request of any method fails, Debian's nginx.service (every run).** A request failed in socket mode",
		"-bench 'MachineFailedRequests/strategy=socket'",
		"| switch overhead, socket mode over reload mode, ≤ 0.5 | 0.61 (0.58–0.66) | **missed** |",
		// as in the golden report
		"| readiness noticed within 15 ms (median; worst shown) | 50.5 ms, worst 100.4 ms | **missed** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Count(out, "**missed**") != 6 {
		t.Errorf("want exactly 6 misses:\n%s", out)
	}
}

func TestMissingBenchmarksAreNotMeasuredNotMet(t *testing.T) {
	res, err := parse(strings.NewReader("BenchmarkScale/servers=1000-2\t5\t1 ns/op\t14 edgeswitch-ms/op\n"), "in")
	if err != nil {
		t.Fatal(err)
	}
	out := (&report{res: res, m: testMachine}).render()
	if strings.Contains(out, "| met |") || !strings.Contains(out, "| switch overhead, edgeswitch over hand-written, ≤ 1.2 | not measured | **missed** |") {
		t.Errorf("a target without figures must show as not measured and missed:\n%s", out)
	}
	if want := "**Missed: socket mode: no request of any method fails, Debian's nginx.service (every run).** Not measured: its benchmark did not run"; !strings.Contains(out, want) {
		t.Errorf("a target not measured must say so, not what a measured miss would mean; want %q:\n%s", want, out)
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 29080: "29,080", 1234567: "1,234,567", 14.6: "15"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func render(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := parse(strings.NewReader(string(raw)), file)
	if err != nil {
		t.Fatal(err)
	}
	return (&report{res: res, m: testMachine}).render() + rawSection(string(raw))
}

// TestCanaryCut: the ratio is that of the medians, its interval the widest
// the two allow; a canary that cuts less than 5x misses its target.
func TestCanaryCut(t *testing.T) {
	var in strings.Builder
	for _, f := range []string{"100", "200", "300", "400", "500"} {
		in.WriteString("BenchmarkBadBuildFailures/canary=0-2\t3\t1 ns/op\t" + f + " failed/op\t1000 requests/op\n")
	}
	for _, f := range []string{"50", "75", "100", "125", "150"} {
		in.WriteString("BenchmarkBadBuildFailures/canary=10-2\t3\t1 ns/op\t" + f + " failed/op\t1000 requests/op\n")
	}
	res, err := parse(strings.NewReader(in.String()), "in")
	if err != nil {
		t.Fatal(err)
	}
	r := &report{res: res, m: testMachine}
	s, ok := r.canaryCut()
	if !ok || s.Center != 3 || math.Abs(s.Lo-100.0/150) > 1e-12 || s.Hi != 10 {
		t.Errorf("canaryCut = %+v, %t; want 3 in [0.67, 10]", s, ok)
	}
	out := r.render()
	for _, want := range []string{
		"| a canary of 10 % cuts the failures of a bad build by at least 5x (median ratio) | 3.0x (0.7–10.0) | **missed** |",
		"| canary 10 % | 100 (50–150) | 1,000 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
