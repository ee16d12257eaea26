package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeswitch/edgeswitch/internal/testedge"
	"github.com/edgeswitch/edgeswitch/swap"
	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

// goldenPorts are fixed so the golden output does not depend on free ports.
var goldenPorts = [2]int{4300, 4301}

// mask replaces what changes from run to run (paths, unit ids, times,
// PIDs, durations) so human output can be compared with a golden file.
func mask(e *testedge.Edge, s string) string {
	s = strings.ReplaceAll(s, e.Dir, "DIR")
	for _, r := range []struct{ re, to string }{
		{`es-[0-9a-z]+-`, "es-ID-"},
		{`\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\dZ?`, "TIME"},
		{`master \d+`, "master PID"},
		{`\d+\.\d\ds  \S+$`, "N.NNs  USER"},
	} {
		s = regexp.MustCompile("(?m)"+r.re).ReplaceAllString(s, r.to)
	}
	return s
}

func goldenFile(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/edgeswitch -run %s -update)", err, t.Name())
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}

func TestStatusAndCheck(t *testing.T) {
	e := testedge.New(t, testedge.Options{Ports: goldenPorts})
	if r := edgeswitch(t, e, "switch"); r.code != 0 {
		t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
	}

	r := edgeswitch(t, e, "status")
	if r.code != 0 {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	goldenFile(t, "status.golden", mask(e, r.stdout))

	r = edgeswitch(t, e, "status", "--json")
	var st swap.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if st.Live == nil || *st.Live != goldenPorts[1] || st.File != e.UpstreamFile || st.Nginx.Workers == 0 ||
		len(st.Slots) != 2 || !st.Slots[1].Healthy || st.Slots[0].Active != "inactive" || st.Last == nil || st.Last.Result != "switched" ||
		!st.Slots[1].Enabled || st.Slots[0].Enabled || st.Problems == nil || len(st.Problems) != 0 {
		t.Errorf("status --json = %s", r.stdout)
	}
	for _, key := range []string{`"problems":[]`, `"history":[`} {
		if !strings.Contains(r.stdout, key) {
			t.Errorf("status --json has no %s: %s", key, r.stdout)
		}
	}

	r = edgeswitch(t, e, "check")
	if r.code != 0 {
		t.Fatalf("check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	goldenFile(t, "check.golden", mask(e, r.stdout))

	before := hashTree(t, filepath.Dir(e.NginxConf))
	if out, err := e.Systemctl(t.Context(), "stop", e.NginxUnit); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	r = edgeswitch(t, e, "check")
	if r.code != 2 {
		t.Errorf("check with nginx stopped: exit %d, want 2", r.code)
	}
	goldenFile(t, "check-nginx-stopped.golden", mask(e, r.stdout))
	assertUnchanged(t, e, before)
	if out, err := e.Systemctl(t.Context(), "start", e.NginxUnit); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	// The live slot stopped by hand: status must not say all is well.
	live := e.SlotUnit(goldenPorts[1])
	if out, err := e.Systemctl(t.Context(), "stop", live); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	r = edgeswitch(t, e, "status")
	if want := "problem   slot 4301 is live but " + live + " is inactive: start it (systemctl --user start " + live + ")"; r.code != 1 || !strings.Contains(r.stdout, want) {
		t.Errorf("status with the live slot stopped: exit %d, want 1 with %q in:\n%s%s", r.code, want, r.stdout, r.stderr)
	}
	// --json at risk: one object, the problem in it, nothing after it.
	r = edgeswitch(t, e, "status", "--json")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var risky swap.Status
	if err := dec.Decode(&risky); err != nil || r.code != 1 || len(risky.Problems) != 1 || !strings.Contains(risky.Problems[0], live+" is inactive") {
		t.Errorf("status --json with the live slot stopped: exit %d (%v), want 1 with its problem in the object:\n%s", r.code, err, r.stdout)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); strings.TrimSpace(string(rest)) != "" || dec.More() {
		t.Errorf("status --json printed more than one JSON value:\n%s", r.stdout)
	}
}

func TestRollback(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	if r := edgeswitch(t, e, "rollback"); r.code != 2 || !strings.Contains(r.stderr, "nothing to roll back to") {
		t.Errorf("rollback with no history: exit %d, want 2 saying so:\n%s", r.code, r.stderr)
	}
	load := startLoad(t, e, 16, "GET", "/")
	if r := edgeswitch(t, e, "switch", "--keep-old"); r.code != 0 {
		t.Fatalf("switch: exit %d\n%s", r.code, r.stderr)
	}
	if st := unitState(t, e, e.Ports[0]); st != "active" {
		t.Fatalf("--keep-old left the old slot %s", st)
	}
	r := edgeswitch(t, e, "rollback")
	if r.code != 0 {
		t.Fatalf("rollback: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "already running") {
		t.Errorf("rollback restarted the kept slot instead of reusing it:\n%s", r.stderr)
	}
	if got := slotOf(t, e); got != strconv.Itoa(e.Ports[0]) {
		t.Errorf("after rollback nginx answers from slot %s, want %d", got, e.Ports[0])
	}
	if stats := load.Stop(); stats.Failed != 0 {
		t.Errorf("rollback under load: %s", stats)
	}
}

func TestHooks(t *testing.T) {
	e := testedge.New(t, testedge.Options{})
	out := filepath.Join(t.TempDir(), "hook.out")
	record := []string{"sh", "-c", `echo "$1 $EDGESWITCH_UPSTREAM $EDGESWITCH_FROM $EDGESWITCH_TO" >> ` + out, "hook"}
	flags := func(name string, argv []string, extra ...string) []string {
		var args []string
		for _, a := range argv {
			args = append(args, "--"+name+"="+a) // "=" lets an argument start with "-"
		}
		return append(args, extra...)
	}

	pre := flags("pre-start", append(record[:len(record):len(record)], "pre"))
	envOut := filepath.Join(t.TempDir(), "hook.env")
	post := flags("post-switch", []string{"sh", "-c", "env | sort > " + envOut})
	t.Setenv("EDGESWITCH_TEST_CALLER", "leaked") // the caller's environment must not reach a hook
	r := edgeswitch(t, e, append(append([]string{"switch"}, pre...), post...)...)
	if r.code != 0 {
		t.Fatalf("switch with hooks: exit %d\n%s", r.code, r.stderr)
	}
	want := "pre app " + strconv.Itoa(e.Ports[0]) + " " + strconv.Itoa(e.Ports[1]) + "\n"
	if got, _ := os.ReadFile(out); string(got) != want {
		t.Errorf("hooks saw %q, want %q", got, want)
	}
	env, _ := os.ReadFile(envOut)
	got := map[string]string{}
	for line := range strings.Lines(string(env)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		if k != "PWD" && k != "SHLVL" && k != "_" { // the shell's own
			got[k] = v
		}
	}
	wantEnv := map[string]string{
		"EDGESWITCH_APP": "app", "EDGESWITCH_UPSTREAM": "app", "LANG": "C.UTF-8", "PATH": swap.HookPath,
		"EDGESWITCH_FROM": strconv.Itoa(e.Ports[0]), "EDGESWITCH_TO": strconv.Itoa(e.Ports[1]),
	}
	if d := cmp.Diff(wantEnv, got); d != "" {
		t.Errorf("a hook's environment (-want +got):\n%s", d)
	}

	before := hashTree(t, filepath.Dir(e.NginxConf))
	r = edgeswitch(t, e, append([]string{"switch"}, flags("pre-start", []string{"false"})...)...)
	if r.code != 1 || !strings.Contains(r.stderr, `hook "false"`) {
		t.Errorf("failing pre-start: exit %d, want 1 naming the hook:\n%s", r.code, r.stderr)
	}
	assertUnchanged(t, e, before)
	if st := unitState(t, e, e.Ports[0]); st != "inactive" {
		t.Errorf("a failing pre-start still started slot %d: %s", e.Ports[0], st)
	}

	r = edgeswitch(t, e, append([]string{"switch"}, flags("post-switch", []string{"false"})...)...)
	if r.code != 0 || !strings.Contains(r.stderr, "warning") {
		t.Errorf("failing post-switch: exit %d, want 0 with a warning:\n%s", r.code, r.stderr)
	}
}
