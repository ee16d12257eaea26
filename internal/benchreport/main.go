// Command benchreport turns the output of the benchmarks (`go test -bench`
// with -count) into BENCHMARKS.md: the median of each figure, the targets it
// meets or misses and what would close a miss, the machine, the nginx
// version and the date, and the raw output for benchstat. It prints the
// tables too. `make bench` runs it.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	in := flag.String("in", "", "`file` with the go test -bench output (required)")
	out := flag.String("out", "BENCHMARKS.md", "`file` to write")
	nginx := flag.String("nginx", "nginx", "nginx `binary` the benchmarks ran, for its version")
	flag.Parse()
	if err := writeReport(*in, *out, *nginx); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func writeReport(in, out, nginx string) error {
	if in == "" {
		return errors.New("-in is required: the file with the go test -bench output")
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	res, err := parse(bytes.NewReader(raw), in)
	if err != nil {
		return err // "file:line: ..."
	}
	if len(res) == 0 {
		return fmt.Errorf("%s has no benchmark results; did the benchmarks fail?", in)
	}
	r := &report{res: res, m: thisMachine(nginx)}
	text := r.render()
	fmt.Print(text)
	if err := os.WriteFile(out, []byte(text+rawSection(string(raw))), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s\n", out)
	return nil
}

// thisMachine describes the machine from /proc, /etc/os-release and the
// tools' own version output; what cannot be read is "unknown".
func thisMachine(nginx string) machine {
	m := machine{
		Date:    time.Now().UTC().Format(time.DateOnly),
		CPU:     field("/proc/cpuinfo", "model name", ":"),
		OS:      strings.Trim(field("/etc/os-release", "PRETTY_NAME", "="), `"`),
		Kernel:  firstLine(os.ReadFile("/proc/sys/kernel/osrelease")),
		Systemd: "unknown",
		Nginx:   "unknown",
		Go:      runtime.Version(),
		Cores:   runtime.NumCPU(),
	}
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(field("/proc/meminfo", "MemTotal", ":"), " kB"), 64); err == nil {
		m.MemGiB = kb / (1 << 20)
	}
	// "systemd 252 (252.39-1~deb12u1)"
	if f := strings.Fields(firstLine(exec.Command("systemctl", "--version").Output())); len(f) >= 2 {
		m.Systemd = strings.Join(f[1:], " ")
	}
	// nginx -v writes "nginx version: nginx/1.22.1" to stderr.
	if _, v, ok := strings.Cut(firstLine(exec.Command(nginx, "-v").CombinedOutput()), "nginx/"); ok {
		m.Nginx = v
	}
	return m
}

// field returns the value of the first "key<sep>value" line of file.
func field(file, key, sep string) string {
	f, err := os.Open(file)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func firstLine(b []byte, err error) string {
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
