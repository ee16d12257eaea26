package nginx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestErrorLog(t *testing.T) {
	const (
		start  = "2026/11/24 21:00:00 [notice] 800#800: start worker processes\n"
		oldBad = "2026/11/24 21:00:01 [emerg] 800#800: an emerg from an earlier reload\n"
		signal = "2026/11/24 21:05:00 [notice] 800#800: signal process started\n"
		bind   = "2026/11/24 21:05:00 [emerg] 800#800: bind() to 127.0.0.1:80 failed (98: Address already in use)\n"
		alert  = "2026/11/24 21:05:00 [alert] 800#800: could not open error log file\n"
		crit   = "2026/11/24 21:05:01 [crit] 801#801: *12 connect() to unix:/run/app.sock failed\n"
		warn   = "2026/11/24 21:05:01 [warn] 800#800: conflicting server name \"[emerg]\" ignored\n"
	)
	tests := []struct {
		name     string
		before   string
		after    string
		truncate bool // the log was rotated: after replaces before
		want     string
	}{
		{
			name:   "the emerg written after the mark is found",
			before: start + oldBad,
			after:  signal + bind + signal,
			want:   "2026/11/24 21:05:00 [emerg] 800#800: bind() to 127.0.0.1:80 failed (98: Address already in use)",
		},
		{
			name:   "the last of several severe lines wins",
			before: start,
			after:  bind + alert + crit + warn,
			want:   "2026/11/24 21:05:01 [crit] 801#801: *12 connect() to unix:/run/app.sock failed",
		},
		{
			name:  "an alert counts",
			after: signal + alert,
			want:  "2026/11/24 21:05:00 [alert] 800#800: could not open error log file",
		},
		{
			name:   "lines before the mark do not count",
			before: start + oldBad,
			after:  signal + warn,
		},
		{
			name:     "a log rotated since the mark is read from its start",
			before:   start + oldBad + start + start,
			after:    bind,
			truncate: true,
			want:     "2026/11/24 21:05:00 [emerg] 800#800: bind() to 127.0.0.1:80 failed (98: Address already in use)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := ErrorLog{Path: filepath.Join(t.TempDir(), "error.log")}
			mark := growLog(t, l.Path, l.Mark, tt.before, tt.after, tt.truncate)
			if diff := cmp.Diff(tt.want, l.LastEmerg(mark)); diff != "" {
				t.Errorf("LastEmerg (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a log that does not exist has nothing", func(t *testing.T) {
		l := ErrorLog{Path: filepath.Join(t.TempDir(), "error.log")}
		if got := l.Mark(); got != 0 {
			t.Errorf("Mark() = %d, want 0", got)
		}
		if got := l.LastEmerg(0); got != "" {
			t.Errorf("LastEmerg(0) = %q, want \"\"", got)
		}
	})
}

func TestErrorLogPath(t *testing.T) {
	const debian = "nginx version: nginx/1.22.1\nconfigure arguments: --with-cc-opt='-g -O2 -ffile-prefix-map=/build/nginx-1.22.1=.' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf --error-log-path=stderr --lock-path=/var/lock/nginx.lock\n"
	tests := []struct {
		name    string
		conf    string // "" for no config file at all
		version string // nginx -V output
		want    string
	}{
		{
			name:    "an absolute error_log in the main config is the log",
			conf:    "user www-data;\nerror_log /var/log/nginx/main.log warn;\nevents {}\n",
			version: debian,
			want:    "/var/log/nginx/main.log",
		},
		{
			name:    "a relative error_log is under the build's prefix",
			conf:    "error_log logs/error.log;\nevents {}\n",
			version: "configure arguments: --prefix=/opt/nginx --error-log-path=/opt/nginx/logs/build.log\n",
			want:    "/opt/nginx/logs/error.log",
		},
		{
			name: "a relative error_log without a known prefix is under /usr/share/nginx",
			conf: "error_log logs/error.log;\nevents {}\n",
			want: "/usr/share/nginx/logs/error.log",
		},
		{
			name:    "stderr, syslog and memory are not files, the next error_log is",
			conf:    "error_log stderr;\nerror_log syslog:server=unix:/dev/log;\nerror_log memory:32m debug;\nerror_log \"/var/log/nginx/quoted.log\";\nevents {}\n",
			version: debian,
			want:    "/var/log/nginx/quoted.log",
		},
		{
			name:    "an error_log inside http is not the main log",
			conf:    "events {}\nhttp {\n    error_log /var/log/nginx/http.log;\n    include /etc/nginx/conf.d/*.conf;\n}\n",
			version: "configure arguments: --prefix=/etc/nginx --error-log-path=/var/log/nginx/build.log\n",
			want:    "/var/log/nginx/build.log",
		},
		{
			name:    "a relative build default is under the build's prefix",
			conf:    "events {}\n",
			version: "configure arguments: --prefix=/usr/local/nginx --error-log-path=logs/error.log\n",
			want:    "/usr/local/nginx/logs/error.log",
		},
		{
			name:    "a build that logs to stderr leaves the usual file",
			conf:    "events {}\n",
			version: debian,
			want:    "/var/log/nginx/error.log",
		},
		{
			name:    "a missing config falls back to the build",
			version: "configure arguments: --error-log-path=/var/log/nginx/build.log\n",
			want:    "/var/log/nginx/build.log",
		},
		{
			name: "without config or build facts it is the usual file",
			want: "/var/log/nginx/error.log",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "nginx.conf")
			if tt.conf != "" {
				if err := os.WriteFile(conf, []byte(tt.conf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			run := &fakeRunner{out: tt.version}
			if tt.version == "" {
				run.err = errors.New("exit status 1")
			}
			got := ErrorLogPath(t.Context(), run.run, "nginx", conf)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ErrorLogPath (-want +got):\n%s", diff)
			}
			if len(run.calls) > 1 {
				t.Errorf("ran %q, want nginx -V at most once", run.calls)
			}
		})
	}

	t.Run("the real nginx finds the log its config names", func(t *testing.T) {
		dir := t.TempDir()
		conf := writeNginxConf(t, dir, "")
		if got, want := ErrorLogPath(t.Context(), ExecRunner, needNginx(t), conf), filepath.Join(dir, "error.log"); got != want {
			t.Errorf("ErrorLogPath = %q, want %q", got, want)
		}
	})
}

// TestRefusalIsOnlyEmerg: an [alert] or [crit] after a reload (a worker that
// died, a failed upstream connect) does not mean nginx refused the config.
func TestRefusalIsOnlyEmerg(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	l := ErrorLog{Path: path}
	alert := "2026/01/02 03:04:05 [alert] 7#7: worker process 9 exited on signal 9\n"
	if err := os.WriteFile(path, []byte(alert), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := l.Refusal(0); got != "" {
		t.Errorf("Refusal = %q after an alert, want none", got)
	}
	emerg := `2026/01/02 03:04:06 [emerg] 7#7: cannot load certificate "/etc/ssl/app.pem"`
	if err := os.WriteFile(path, []byte(alert+emerg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := l.Refusal(int64(len(alert))); got != emerg {
		t.Errorf("Refusal = %q, want %q", got, emerg)
	}
}

// TestRefusalWaitsOutBindRetries: nginx tries a bind five times before it
// gives up on a reload; a port that comes free meanwhile means the reload
// took, so only its last word is a refusal.
func TestRefusalWaitsOutBindRetries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	l := ErrorLog{Path: path}
	retry := "2026/01/02 03:04:05 [emerg] 7#7: bind() to 127.0.0.1:8080 failed (98: Address already in use)\n"
	if err := os.WriteFile(path, []byte(retry+retry), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := l.Refusal(0); got != "" {
		t.Errorf("Refusal = %q while nginx still retries the bind, want none", got)
	}
	final := "2026/01/02 03:04:07 [emerg] 7#7: still could not bind()"
	if err := os.WriteFile(path, []byte(retry+retry+final+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := l.Refusal(0); got != final {
		t.Errorf("Refusal = %q, want %q", got, final)
	}
}

// TestUpstreamFailuresNameTheSlot: only failed requests to that slot count,
// not those to the other slot or to a port that merely starts the same.
func TestUpstreamFailuresNameTheSlot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	line := func(addr string) string {
		return `2026/01/02 03:04:05 [error] 7#7: *12 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://` + addr + `/", host: "x"` + "\n"
	}
	before := line("127.0.0.1:4001")
	text := before + line("127.0.0.1:4000") + line("127.0.0.1:40011") + line("127.0.0.1:4001") +
		"2026/01/02 03:04:06 [warn] 7#7: *13 an upstream response is buffered to a temporary file, upstream: \"http://127.0.0.1:4001/big\"\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	n, last := ErrorLog{Path: path}.UpstreamFailures(int64(len(before)), "127.0.0.1:4001")
	if n != 1 || !strings.Contains(last, `upstream: "http://127.0.0.1:4001/"`) {
		t.Errorf("UpstreamFailures = %d, %q; want the one failed request to 127.0.0.1:4001 after the mark", n, last)
	}
}

func TestUpstreamFailuresOfAUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "error.log")
	line := func(addr string) string {
		return `2026/01/02 03:04:05 [error] 7#7: *12 connect() to unix:/x failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: , request: "GET / HTTP/1.1", upstream: "http://` + addr + `:/", host: "x"` + "\n"
	}
	text := line("unix:/var/lib/edgeswitch/app.sock") + line("unix:/var/lib/edgeswitch/app.sock2")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	n, _ := ErrorLog{Path: path}.UpstreamFailures(0, "unix:/var/lib/edgeswitch/app.sock")
	if n != 1 {
		t.Errorf("UpstreamFailures = %d; want the one failed request to the socket, not to app.sock2", n)
	}
}

// growLog writes before to the log at path, takes mark (the log's Mark),
// checks it, then appends after (or, with truncate, writes it over what
// was, as a rotation does) and returns the mark.
func growLog(t *testing.T, path string, mark func() int64, before, after string, truncate bool) int64 {
	t.Helper()
	if err := os.WriteFile(path, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mark()
	if m != int64(len(before)) {
		t.Errorf("Mark() = %d, want %d", m, len(before))
	}
	flags := os.O_WRONLY | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(after)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	return m
}
