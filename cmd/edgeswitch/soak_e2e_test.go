package main

import (
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
)

var soak = flag.Int("soak", 0, "switches in TestSoak (make soak runs 200); 0 skips it")

// TestSoak switches many times in a row under load and checks that nothing
// leaks: no failed GET, one app process and one active slot unit at the
// end, no temp or pending files, and nginx's and edgeswitch's memory steady.
//
//	go test ./cmd/edgeswitch -run TestSoak -soak 200 -v
func TestSoak(t *testing.T) {
	if *soak == 0 {
		t.Skip("pass -soak N (make soak) to run it")
	}
	e := testedge.New(t, testedge.Options{})
	load := startLoad(t, e, 32, http.MethodGet, "/")
	var firstNginx, lastNginx, firstSelf, lastSelf int64
	for i := range *soak {
		cmd := exec.Command(binary(t), append([]string{"switch"}, edgeFlags(e)...)...)
		cmd.Env = append(os.Environ(), e.Env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("switch %d: %v\n%s", i+1, err, out)
		}
		self := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		ng := nginxRSS(t, e)
		if i == 9 { // after warm-up: the first reloads grow nginx's shared memory
			firstNginx, firstSelf = ng, self
		}
		lastNginx, lastSelf = ng, self
		if (i+1)%50 == 0 {
			t.Logf("after %d switches: nginx RSS %d kB, edgeswitch peak RSS %d kB, %s", i+1, ng, self, load.Snapshot())
		}
	}
	stats := load.Stop()
	t.Logf("load: %s", stats)
	if stats.Failed != 0 {
		t.Errorf("%d GETs failed", stats.Failed)
	}
	if lastNginx > firstNginx*3/2+4096 {
		t.Errorf("nginx RSS grew from %d kB to %d kB", firstNginx, lastNginx)
	}
	if lastSelf > firstSelf*3/2+4096 {
		t.Errorf("edgeswitch peak RSS grew from %d kB to %d kB", firstSelf, lastSelf)
	}
	out, _ := exec.Command("pgrep", "-f", "-c", filepath.Join(e.Dir, "bin", "demoapp")).Output()
	if n := strings.TrimSpace(string(out)); n != "1" {
		t.Errorf("%s demoapp processes running, want 1", n)
	}
	units := must(t)(e.Systemctl(t.Context(), "list-units", "--state=active", "--no-legend", e.SlotUnit(e.Ports[0]), e.SlotUnit(e.Ports[1])))
	if lines := strings.Split(strings.TrimSpace(units), "\n"); len(lines) != 1 || lines[0] == "" {
		t.Errorf("active slot units: %q, want one", units)
	}
	assertNoStrayFiles(t, e)
}

// nginxRSS is the resident memory of nginx's master and workers in kB.
func nginxRSS(t *testing.T, e *testedge.Edge) int64 {
	t.Helper()
	pidText, err := os.ReadFile(filepath.Join(e.Dir, "nginx", "nginx.pid"))
	if err != nil {
		t.Fatal(err)
	}
	master := strings.TrimSpace(string(pidText))
	out, _ := exec.Command("pgrep", "-P", master).Output()
	var total int64
	for _, pid := range append(strings.Fields(string(out)), master) {
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue // a worker that just exited
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				total += kb
			}
		}
	}
	return total
}
