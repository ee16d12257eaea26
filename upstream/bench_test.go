package upstream

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// BenchmarkScale measures what a switch does to the config (find the
// upstream in the whole tree, compute the edit, render the diff) on generated
// trees of n server blocks and n/10 upstreams, about 20 lines per server
// block. Each iteration also runs `nginx -t` on the same tree, so the two are
// measured side by side on an equally busy machine; the ratio metric is
// edgeswitch's time over nginx -t's. peak-RSS-MB is the test process's peak
// resident memory while it edits that size (the kernel's high-water mark,
// reset before each size; it includes the test binary itself).
//
//	go test -run '^$' -bench Scale -benchtime 5x ./upstream/
func BenchmarkScale(b *testing.B) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		nginx = "/usr/sbin/nginx"
	}
	for _, n := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("servers=%d", n), func(b *testing.B) {
			main, lines := generate(b, n, n/10)
			resetPeakRSS(b)
			b.ReportAllocs()
			var own, ref time.Duration
			for b.Loop() {
				start := time.Now()
				bl, err := Find(main, "app", slots)
				if err != nil {
					b.Fatal(err)
				}
				e, err := bl.To("127.0.0.1:4001", slots)
				if err != nil || !strings.Contains(e.Diff(), "+\tserver 127.0.0.1:4001;") {
					b.Fatalf("edit: %v", err)
				}
				own += time.Since(start)

				start = time.Now()
				if out, err := exec.Command(nginx, "-t", "-q", "-c", main).CombinedOutput(); err != nil {
					b.Fatalf("nginx -t: %v\n%s", err, out)
				}
				ref += time.Since(start)
			}
			peak := peakRSS(b)
			b.ReportMetric(float64(own.Milliseconds())/float64(b.N), "edgeswitch-ms/op")
			b.ReportMetric(float64(ref.Milliseconds())/float64(b.N), "nginx-t-ms/op")
			b.ReportMetric(float64(own)/float64(ref), "ratio")
			b.ReportMetric(peak, "peak-RSS-MB")
			b.ReportMetric(float64(lines), "lines")
		})
	}
}

// resetPeakRSS returns freed memory to the kernel and resets its record of
// this process's peak resident memory to the current value (Linux 4.0+).
func resetPeakRSS(b *testing.B) {
	b.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("resetting the peak RSS: %v", err)
	}
}

// peakRSS reads the process's peak resident memory in MB (VmHWM).
func peakRSS(b *testing.B) float64 {
	b.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var n float64
			if _, err := fmt.Sscanf(kb, "%f kB", &n); err != nil {
				b.Fatalf("VmHWM %q: %v", kb, err)
			}
			return n / 1024
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// generate writes a config tree with servers server blocks spread over
// include files and upstreams upstream blocks, with upstream app in the
// middle, and returns its main file and its line count.
func generate(tb testing.TB, servers, upstreams int) (string, int) {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sites"), 0o755); err != nil {
		tb.Fatal(err)
	}
	lines := 0
	write := func(name, text string) {
		lines += strings.Count(text, "\n")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	write("nginx.conf", "worker_processes 1;\nevents { worker_connections 64; }\nhttp {\n"+
		"    server_names_hash_max_size 65536;\n    server_names_hash_bucket_size 128;\n"+
		"    include sites/*.conf;\n}\n")
	const perFile = 100
	for f := 0; f*perFile < servers; f++ {
		var s strings.Builder
		for i := f * perFile; i < min((f+1)*perFile, servers); i++ {
			if i%10 == 0 && i/10 < upstreams {
				u := i / 10
				if pool(u, upstreams) == "app" {
					s.WriteString("upstream app {\n\tserver 127.0.0.1:4000;\n\tkeepalive 16;\n}\n")
				} else {
					fmt.Fprintf(&s, "upstream %s {\n\tserver 10.%d.%d.1:8080 weight=2;\n\tserver 10.%d.%d.2:8080;\n\tkeepalive 8;\n}\n",
						pool(u, upstreams), u/250, u%250, u/250, u%250)
				}
			}
			fmt.Fprintf(&s, `server {
	listen 8080;
	server_name site%d.example.com www.site%d.example.com;
	root /srv/site%d;
	# static files first, then the app
	location / {
		try_files $uri $uri/ @app;
	}
	location @app {
		proxy_pass http://%s;
		proxy_set_header Host $host;
		proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
	}
	location ~* \.(css|js|png)$ {
		expires 30d;
		add_header Cache-Control "public";
	}
	error_page 502 503 /50x.html;
}
`, i, i, i, pool(i/10%upstreams, upstreams))
		}
		write(fmt.Sprintf("sites/s%04d.conf", f), s.String())
	}
	return filepath.Join(dir, "nginx.conf"), lines
}

// pool names the generated upstream u; the one in the middle is app.
func pool(u, upstreams int) string {
	if u == upstreams/2 {
		return "app"
	}
	return fmt.Sprintf("pool%d", u)
}
