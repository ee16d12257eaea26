package nginx

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeswitch/edgeswitch/templates"
	"github.com/google/go-cmp/cmp"
)

// The log format the upstream template suggests; TestSuggestedFormat
// checks that it does.
const (
	suggestedFormat = `log_format edgeswitch '$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_status $request_time';`
	suggestedLog    = `access_log /var/log/nginx/access.log edgeswitch;`
)

func TestSuggestedFormat(t *testing.T) {
	text, err := templates.Render(templates.Upstream, templates.Data{App: "app", Host: "127.0.0.1", Ports: [2]int{4000, 4001}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{suggestedFormat, suggestedLog} {
		if !strings.Contains(string(text), "\n#    "+want+"\n") {
			t.Errorf("the upstream template does not suggest %s:\n%s", want, text)
		}
	}
}

// dump is what nginx -T prints for a Debian style config, after a warning
// that goes to stderr first. Of its access logs only access.log (once, in
// http and again in a server), the relative one and the JSON one record
// which upstream answered, and can be read.
var dump = `nginx: [warn] "ssl_stapling" ignored, issuer certificate not found for certificate "/etc/ssl/app.pem"
# configuration file /etc/nginx/nginx.conf:
user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {
	worker_connections 768;
}

http {
	sendfile on;
	include /etc/nginx/mime.types;
	default_type application/octet-stream;

	##
	# Logging Settings
	##

	access_log /var/log/nginx/combined.log;
	error_log /var/log/nginx/error.log;

	include /etc/nginx/conf.d/*.conf;
	include /etc/nginx/sites-enabled/*;
}

# configuration file /etc/nginx/modules-enabled/50-mod-http-echo.conf:
load_module modules/ngx_http_echo_module.so;

# configuration file /etc/nginx/mime.types:

types {
    text/html                                        html htm shtml;
    text/css                                         css;
    application/javascript                           js;
}

# configuration file /etc/nginx/conf.d/00-logging.conf:
# The 5xx watch of edgeswitch's bake needs these two; don't drop "them".
log_format edgeswitch '$remote_addr [$time_local] "$request" $status '
                      '$upstream_addr $upstream_status $request_time';
log_format json escape=json
    '{"time":"$time_iso8601","upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","agent":"$http_user_agent"}';
log_format timing "$remote_addr $request_time $upstream_response_time";
map $status $loggable {
    ~^[23]  0;
    default 1;
}
access_log /var/log/nginx/access.log edgeswitch;

# configuration file /etc/nginx/conf.d/app.conf:
upstream app {
    server 127.0.0.1:4001;
    keepalive 16;
}

# configuration file /etc/nginx/sites-enabled/default:
server {
	listen 80 default_server;
	server_name _;
	access_log /var/log/nginx/access.log edgeswitch buffer=32k flush=5s;
	access_log logs/relative.log edgeswitch;
	access_log /var/log/nginx/app.json json;
	access_log /var/log/nginx/timing.log timing;
	access_log /var/log/nginx/$host.log edgeswitch;
	access_log syslog:server=unix:/dev/log,tag=nginx edgeswitch;
	access_log /var/log/nginx/errors-only.log edgeswitch if=$loggable;
	access_log /var/log/nginx/access.log.gz edgeswitch gzip=5 flush=1m;
	access_log /dev/stdout edgeswitch;
	location / {
		proxy_pass http://app;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
	}
	location /static/ {
		access_log off;
		root /srv/static;
	}
}

`

// fakeNginx answers -T with dump and -V with version, and records the calls.
type fakeNginx struct {
	dump, version string
	calls         []string
}

func (f *fakeNginx) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(append([]string{name}, args...), " "))
	if len(args) > 0 && args[0] == "-V" {
		return []byte(f.version), nil
	}
	return []byte(f.dump), nil
}

// logs reduces access logs to what a test compares: path and format name.
func logs(ls []AccessLog) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Path+" "+l.Format)
	}
	return out
}

func TestAccessLogs(t *testing.T) {
	run := &fakeNginx{dump: dump, version: "configure arguments: --prefix=/etc/nginx --conf-path=/etc/nginx/nginx.conf\n"}
	got, err := AccessLogs(t.Context(), run.run, "/usr/sbin/nginx", "/etc/nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/var/log/nginx/access.log edgeswitch",
		"/etc/nginx/logs/relative.log edgeswitch",
		"/var/log/nginx/app.json json",
	}
	if diff := cmp.Diff(want, logs(got)); diff != "" {
		t.Errorf("AccessLogs (-want +got):\n%s", diff)
	}
	wantCalls := []string{"/usr/sbin/nginx -T -q -c /etc/nginx/nginx.conf", "/usr/sbin/nginx -V"}
	if diff := cmp.Diff(wantCalls, run.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}

	t.Run("absolute paths need no nginx -V", func(t *testing.T) {
		run := &fakeNginx{dump: "# configuration file /etc/nginx/nginx.conf:\nhttp {\n" + suggestedFormat + "\n" + suggestedLog + "\n}\n"}
		got, err := AccessLogs(t.Context(), run.run, "nginx", "/etc/nginx/nginx.conf")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"/var/log/nginx/access.log edgeswitch"}, logs(got)); diff != "" {
			t.Errorf("AccessLogs (-want +got):\n%s", diff)
		}
		if len(run.calls) != 1 {
			t.Errorf("ran %q, want only nginx -T", run.calls)
		}
	})

	t.Run("only the combined format is no log to read", func(t *testing.T) {
		run := &fakeNginx{dump: "# configuration file /etc/nginx/nginx.conf:\nhttp {\n    access_log /var/log/nginx/access.log;\n    access_log /var/log/nginx/other.log combined;\n}\n"}
		got, err := AccessLogs(t.Context(), run.run, "nginx", "/etc/nginx/nginx.conf")
		if err != nil || len(got) != 0 {
			t.Errorf("AccessLogs = %q, %v; want none and no error", logs(got), err)
		}
	})

	t.Run("an nginx that cannot print its config is an error", func(t *testing.T) {
		exit := errors.New("exit status 1")
		run := func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return []byte("nginx: [emerg] unknown directive \"acces_log\" in /etc/nginx/nginx.conf:3\nnginx: configuration file /etc/nginx/nginx.conf test failed\n"), exit
		}
		_, err := AccessLogs(t.Context(), run, "nginx", "/etc/nginx/nginx.conf")
		if !errors.Is(err, exit) {
			t.Errorf("error %v does not wrap %v", err, exit)
		}
		want := `nginx -T -q -c /etc/nginx/nginx.conf: exit status 1: [emerg] unknown directive "acces_log" in /etc/nginx/nginx.conf:3`
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
}

// dumpLog returns the dump's log in format name, moved to path.
func dumpLog(t *testing.T, name, path string) AccessLog {
	t.Helper()
	got, err := AccessLogs(t.Context(), (&fakeNginx{dump: dump}).run, "nginx", "/etc/nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range got {
		if l.Format == name {
			l.Path = path
			return l
		}
	}
	t.Fatalf("AccessLogs = %q, want a log in format %s", logs(got), name)
	return AccessLog{}
}

func TestAnswers(t *testing.T) {
	// Lines as nginx 1.22 writes them in the edgeswitch format.
	line := func(addr, status string) string {
		return fmt.Sprintf(`127.0.0.1 [25/Nov/2026:02:33:59 +0000] "GET /x?q=a%%20b HTTP/1.1" %s %s %s 0.001`+"\n",
			status[strings.LastIndex(status, " ")+1:], addr, status)
	}
	var (
		ok      = line("127.0.0.1:4001", "200")
		failed  = line("127.0.0.1:4001", "503")
		retried = line("127.0.0.1:4000, 127.0.0.1:4001", "502, 200")
		onOld   = line("127.0.0.1:4000", "500")
		fellOff = line("127.0.0.1:4001, 127.0.0.1:4000", "502, 200") // the new slot failed, the old one answered
		prefix  = line("127.0.0.1:40011", "500")                     // another port that starts the same
		allDown = line("app", "502")                                 // nginx names the group when no server is left
		static  = `127.0.0.1 [25/Nov/2026:02:33:59 +0000] "GET /static/app.css HTTP/1.1" 200 - - 0.000` + "\n"
		garbled = "127.0.0.1 [25/Nov/2026:02:3 127.0.0.1:4001 500\n"
	)
	tests := []struct {
		name         string
		before       string
		after        string
		truncate     bool // the log was rotated: after replaces before
		total, fives int
	}{
		{
			name:   "answers after the mark are counted, 5xx apart",
			before: failed + failed,
			after:  ok + failed + ok + ok,
			total:  4, fives: 1,
		},
		{
			name:  "a retried request counts for the server that answered last, with its status",
			after: retried + fellOff,
			total: 1,
		},
		{
			name:  "other servers, the group name, no upstream and garbled lines do not count",
			after: onOld + prefix + allDown + static + garbled + "\n" + failed,
			total: 1, fives: 1,
		},
		{
			name:     "a log rotated since the mark is read from its start",
			before:   ok + ok + ok + ok + ok,
			after:    failed + ok,
			truncate: true,
			total:    2, fives: 1,
		},
		{
			name:   "nothing written since the mark is nothing",
			before: ok + failed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := dumpLog(t, "edgeswitch", filepath.Join(t.TempDir(), "access.log"))
			mark := growLog(t, l.Path, l.Mark, tt.before, tt.after, tt.truncate)
			total, fives := l.Answers(mark, "127.0.0.1:4001")
			if total != tt.total || fives != tt.fives {
				t.Errorf("Answers = %d, %d; want %d, %d", total, fives, tt.total, tt.fives)
			}
		})
	}

	t.Run("a log that does not exist has no answers", func(t *testing.T) {
		l := dumpLog(t, "edgeswitch", filepath.Join(t.TempDir(), "access.log"))
		if got := l.Mark(); got != 0 {
			t.Errorf("Mark() = %d, want 0", got)
		}
		if total, fives := l.Answers(0, "127.0.0.1:4001"); total != 0 || fives != 0 {
			t.Errorf("Answers = %d, %d; want 0, 0", total, fives)
		}
	})

	t.Run("only the last MiB of a grown log is read, from a whole line", func(t *testing.T) {
		// A line of 128 bytes ends right where the last MiB starts; one
		// of 130 is cut there after "127", and what is left of it would
		// still read as an answer.
		for _, size := range []int{128, 130} {
			l := dumpLog(t, "edgeswitch", filepath.Join(t.TempDir(), "access.log"))
			pad := strings.Repeat("a", size-len(ok))
			line := strings.Replace(ok, "/x?", "/x"+pad+"?", 1)
			n := maxTail/size + 1 // lines in the log: one more than the MiB holds whole
			if err := os.WriteFile(l.Path, []byte(strings.Repeat(line, n)), 0o644); err != nil {
				t.Fatal(err)
			}
			if total, _ := l.Answers(0, "127.0.0.1:4001"); total != n-1 {
				t.Errorf("lines of %d bytes: Answers counted %d, want the %d whole ones in the last MiB", size, total, n-1)
			}
		}
	})

	t.Run("the JSON log counts the same", func(t *testing.T) {
		l := dumpLog(t, "json", filepath.Join(t.TempDir(), "app.json"))
		line := func(addr, status, agent string) string {
			return `{"time":"2026-11-25T02:33:59+00:00","upstream":"` + addr + `","upstream_status":"` + status + `","agent":"` + agent + `"}` + "\n"
		}
		text := line("127.0.0.1:4000, 127.0.0.1:4001", "502, 504", `say \"hi\" \\ x`) +
			line("127.0.0.1:4001", "200", "curl/7.88.1") + line("127.0.0.1:4000", "500", "curl/7.88.1") + line("", "", "curl/7.88.1")
		if err := os.WriteFile(l.Path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if total, fives := l.Answers(0, "127.0.0.1:4001"); total != 2 || fives != 1 {
			t.Errorf("Answers = %d, %d; want 2, 1", total, fives)
		}
	})

	t.Run("a zero AccessLog has no answers", func(t *testing.T) {
		if total, fives := (AccessLog{Path: "/nonexistent"}).Answers(0, "127.0.0.1:4001"); total != 0 || fives != 0 {
			t.Errorf("Answers = %d, %d; want 0, 0", total, fives)
		}
	})
}

// TestFormats: the layouts the format parser reads, each with a line nginx
// writes in it and the upstream fields it holds.
func TestFormats(t *testing.T) {
	tests := []struct {
		name, format, line string
		addr, status       string
		noMatch            bool
	}{
		{
			name:   "the suggested format",
			format: `$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_status $request_time`,
			line:   `127.0.0.1 [25/Nov/2026:02:33:59 +0000] "GET /x HTTP/1.1" 200 127.0.0.1:18991, 127.0.0.1:18992 502, 200 0.001`,
			addr:   "127.0.0.1:18991, 127.0.0.1:18992", status: "502, 200",
		},
		{
			name:   "combined with the upstream fields after it, a quote in a header",
			format: `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $upstream_addr $upstream_status`,
			line:   `::1 - - [25/Nov/2026:02:33:59 +0000] "GET / HTTP/1.1" 200 612 "-" "Mozilla/5.0 (X11; Linux) say \x22hi\x22" [::1]:4001 200`,
			addr:   "[::1]:4001", status: "200",
		},
		{
			name:   "escape=json, with a quote and a backslash in a header",
			format: `{"time":"$time_iso8601","upstream":"$upstream_addr","upstream_status":"$upstream_status","agent":"$http_user_agent"}`,
			line:   `{"time":"2026-11-25T02:33:59+00:00","upstream":"127.0.0.1:4001","upstream_status":"503","agent":"say \"hi\" \\ x"}`,
			addr:   "127.0.0.1:4001", status: "503",
		},
		{
			name:   "escape=json writes an empty value as nothing",
			format: `{"upstream":"$upstream_addr","upstream_status":$upstream_status}`,
			line:   `{"upstream":"","upstream_status":}`,
		},
		{
			name:   "escape=json with the status unquoted",
			format: `{"upstream":"$upstream_addr","upstream_status":$upstream_status}`,
			line:   `{"upstream":"127.0.0.1:4000, 127.0.0.1:4001","upstream_status":502, 200}`,
			addr:   "127.0.0.1:4000, 127.0.0.1:4001", status: "502, 200",
		},
		{
			name:   "key=value pairs, an internal redirect and lists in other upstream fields",
			format: `ts=$msec upstream=$upstream_addr us=$upstream_status urt=$upstream_response_time host=$host`,
			line:   `ts=1795574039.123 upstream=127.0.0.1:4000, 127.0.0.1:4001 : unix:/run/err.sock us=502, 404 : 200 urt=0.001, 0.002 : 0.000 host=example.com`,
			addr:   "127.0.0.1:4000, 127.0.0.1:4001 : unix:/run/err.sock", status: "502, 404 : 200",
		},
		{
			name:   "braced variables between other characters",
			format: `$remote_addr ${upstream_addr}|${upstream_status}|$status`,
			line:   `10.0.0.9 127.0.0.1:4001|200|200`,
			addr:   "127.0.0.1:4001", status: "200",
		},
		{
			name:    "a line that is cut off does not match",
			format:  `$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_status $request_time`,
			line:    `127.0.0.1 [25/Nov/2026:02:33:59 +0000] "GET /x HTTP/1.1" 200 127.0.0.1:4001`,
			noMatch: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := compileFormat(tt.format)
			if !ok {
				t.Fatalf("compileFormat(%q) found no $upstream_addr and $upstream_status", tt.format)
			}
			m := l.line.FindStringSubmatch(tt.line)
			if m == nil {
				if !tt.noMatch {
					t.Errorf("%s\n  does not match regexp %s", tt.line, l.line)
				}
				return
			}
			if tt.noMatch {
				t.Errorf("%s\n  matches regexp %s, want no match", tt.line, l.line)
			}
			if addr, status := m[l.addr], m[l.status]; addr != tt.addr || status != tt.status {
				t.Errorf("%s\n  read upstream %q, status %q; want %q, %q\n  regexp %s", tt.line, addr, status, tt.addr, tt.status, l.line)
			}
		})
	}

	for _, format := range []string{
		`$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`,
		`$remote_addr $upstream_addr $status`,
		`$remote_addr $upstream_addresses $upstream_status_code`,
	} {
		if _, ok := compileFormat(format); ok {
			t.Errorf("compileFormat(%q) is usable, want it refused: it lacks $upstream_addr or $upstream_status", format)
		}
	}
}

func TestLastUpstream(t *testing.T) {
	for list, want := range map[string]string{
		"127.0.0.1:4001":                              "127.0.0.1:4001",
		"127.0.0.1:4000, 127.0.0.1:4001":              "127.0.0.1:4001",
		"127.0.0.1:4000 : 127.0.0.1:4001":             "127.0.0.1:4001",
		"a, b : c, 127.0.0.1:4001":                    "127.0.0.1:4001",
		"127.0.0.1:4001, 127.0.0.1:4000 : [::1]:4001": "[::1]:4001",
		"-": "-",
	} {
		if got := lastUpstream(list); got != want {
			t.Errorf("lastUpstream(%q) = %q, want %q", list, got, want)
		}
	}
}

// TestDirectives: the dump is read as nginx reads a config, quotes,
// escapes, comments and all, each file on its own and without the warnings
// before it.
func TestDirectives(t *testing.T) {
	text := `nginx: [warn] a warning before the dump with a ' in it
# configuration file /etc/nginx/a.conf:
# a comment; with "quotes
log_format  q  "say \"hi\"" 'it\'s' \t "\\n" x#not-a-comment
  'two
lines';
set $x ${host}y;
location ~ "^/a{2}$" { return 200; }
access_log /var/log/a#b.log;
# configuration file /etc/nginx/lua.conf:
content_by_lua_block {
    ngx.say([[ he said "hi ]])
}
# configuration file /etc/nginx/b.conf:
access_log /var/log/b.log;
`
	want := [][]string{
		{"log_format", "q", `say "hi"`, `it's`, "\t", `\n`, "x#not-a-comment", "two\nlines"},
		{"set", "$x", "${host}y"},
		{"return", "200"},
		{"access_log", "/var/log/a#b.log"},
		{"access_log", "/var/log/b.log"},
	}
	if diff := cmp.Diff(want, dumpDirectives(text)); diff != "" {
		t.Errorf("dumpDirectives (-want +got):\n%s", diff)
	}
}

// TestAccessLogsOnRealNginx runs the real nginx -T on a config that takes
// the suggested format from an included file.
func TestAccessLogsOnRealNginx(t *testing.T) {
	bin := needNginx(t)
	dir := t.TempDir()
	include := filepath.Join(dir, "logging.conf")
	if err := os.WriteFile(include, []byte(suggestedFormat+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	access := filepath.Join(dir, "access.log")
	conf := writeNginxConf(t, dir, fmt.Sprintf(`include %s;
    server {
        listen 127.0.0.1:18081;
        access_log %s edgeswitch;
        access_log %s/combined.log;
    }`, include, access, dir))
	got, err := AccessLogs(t.Context(), ExecRunner, bin, conf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{access + " edgeswitch"}, logs(got)); diff != "" {
		t.Fatalf("AccessLogs (-want +got):\n%s", diff)
	}
	line := `127.0.0.1 [25/Nov/2026:02:33:59 +0000] "GET /x HTTP/1.1" 502 127.0.0.1:4001 502 0.001` + "\n"
	if err := os.WriteFile(access, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	if total, fives := got[0].Answers(0, "127.0.0.1:4001"); total != 1 || fives != 1 {
		t.Errorf("Answers = %d, %d; want 1, 1", total, fives)
	}
}
