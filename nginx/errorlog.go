package nginx

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/tufanbarisyildirim/gonginx/parser"
)

// Where nginx logs when neither the config nor the build says otherwise
// usably: Debian's build says --error-log-path=stderr and its packaged
// nginx.conf sets this file.
const (
	defaultErrorLog = "/var/log/nginx/error.log"
	defaultPrefix   = "/usr/share/nginx"
)

// ErrorLog is nginx's main error log. A master that rejects a config on
// reload says why only there, so the confirm step marks the log before the
// reload and reads what was appended after it.
type ErrorLog struct{ Path string }

// ErrorLogPath finds the main error log of the nginx that conf configures:
// the first top-level `error_log` in conf that names a file, else the build's
// --error-log-path from `bin -V`, else /var/log/nginx/error.log. Relative
// paths are resolved against the build's --prefix (nginx's -p at run time
// is not visible here). Files included from conf are not searched. It
// never fails: a wrong guess only costs the [emerg] line in a report.
func ErrorLogPath(ctx context.Context, run Runner, bin, conf string) string {
	build, resolve := buildFacts(ctx, run, bin)
	if path := confErrorLog(conf); path != "" {
		return resolve(path)
	}
	if path := build("error-log-path"); isFile(path) {
		return resolve(path)
	}
	return defaultErrorLog
}

// buildFacts returns build, which looks up one of the build's configure
// arguments (--prefix, --error-log-path...) in `bin -V`, and resolve, which
// makes a path from the config absolute as nginx does: against the build's
// --prefix, or /usr/share/nginx when that is unknown. bin -V runs once, and
// only when one of them needs it.
func buildFacts(ctx context.Context, run Runner, bin string) (build, resolve func(string) string) {
	version := sync.OnceValue(func() string {
		out, _ := run(ctx, bin, "-V")
		return string(out)
	})
	build = func(name string) string {
		for _, f := range strings.Fields(version()) {
			if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
				return strings.Trim(v, `'"`)
			}
		}
		return ""
	}
	resolve = func(path string) string {
		if filepath.IsAbs(path) {
			return path
		}
		prefix := build("prefix")
		if prefix == "" {
			prefix = defaultPrefix
		}
		return filepath.Join(prefix, path)
	}
	return build, resolve
}

// confErrorLog returns the first top-level error_log in the main config
// file that names a file, or "".
func confErrorLog(conf string) string {
	p, err := parser.NewParser(conf, parser.WithSkipValidDirectivesErr())
	if err != nil {
		return ""
	}
	c, err := p.Parse()
	if err != nil {
		return ""
	}
	for _, d := range c.Block.GetDirectives() {
		params := d.GetParameters()
		if d.GetName() != "error_log" || len(params) == 0 {
			continue
		}
		if path := strings.Trim(params[0].Value, `'"`); isFile(path) {
			return path
		}
	}
	return ""
}

// isFile reports whether an error_log target is a file rather than stderr,
// syslog or the in-memory buffer.
func isFile(target string) bool {
	return target != "" && target != "stderr" &&
		!strings.HasPrefix(target, "syslog:") && !strings.HasPrefix(target, "memory:")
}

// Mark returns the log's current size, the offset to read from later; 0 when
// the log does not exist yet.
func (l ErrorLog) Mark() int64 { return logSize(l.Path) }

// logSize returns the size of the log at path, or 0 when it does not exist.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// maxTail bounds how much is read after a mark, in case a debug level error
// log or a busy access log grew a lot since.
const maxTail = 1 << 20

// LastEmerg returns the last line at level emerg, alert or crit written
// after offset mark, trimmed, or "" when there is none. A log now shorter
// than mark was rotated or truncated and is read from the start.
func (l ErrorLog) LastEmerg(mark int64) string {
	return l.last(mark, "[emerg]", "[alert]", "[crit]")
}

// Refusal returns the last [emerg] line written after mark, or "": that is
// how a master that refuses a new config on reload (a bind error, a
// missing certificate) says so, while it goes on with the old one. A bind
// that failed is no refusal yet: nginx tries it five times, half a second
// apart, and takes the config if the port comes free meanwhile; its last
// word is "still could not bind()".
func (l ErrorLog) Refusal(mark int64) string {
	line := l.last(mark, "[emerg]")
	if bindRetry.MatchString(line) {
		return ""
	}
	return line
}

// bindRetry matches the [emerg] line of a bind that nginx will try again.
var bindRetry = regexp.MustCompile(`\] \d+#\d+: bind\(\) to \S+ failed \(`)

func (l ErrorLog) last(mark int64, levels ...string) string {
	var last string
	l.scan(mark, func(level, line string) {
		if slices.Contains(levels, level) {
			last = line
		}
	})
	return last
}

// UpstreamFailures counts the [error] lines written after mark about
// requests to the upstream server addr that failed (refused, reset,
// timed out), and returns the last: requests the slot at addr lost.
func (l ErrorLog) UpstreamFailures(mark int64, addr string) (n int, last string) {
	// '... upstream: "http://127.0.0.1:4001/health", host: ...', or
	// https://, grpc://, fastcgi://, uwsgi://; a unix socket's path ends
	// at a colon: "http://unix:/run/app.sock:/health"
	needle := "://" + addr
	ends := `/"`
	if strings.HasPrefix(addr, "unix:") {
		ends = `:"`
	}
	l.scan(mark, func(level, line string) {
		u := strings.Index(line, `upstream: "`)
		i := -1
		if u >= 0 {
			if j := strings.Index(line[u:], needle); j >= 0 {
				i = u + j
			}
		}
		if level != "[error]" || i < 0 || len(line) <= i+len(needle) || !strings.ContainsRune(ends, rune(line[i+len(needle)])) {
			return
		}
		n, last = n+1, line
	})
	return n, last
}

// scan calls fn with the level and text of each line written after mark.
func (l ErrorLog) scan(mark int64, fn func(level, line string)) {
	tail(l.Path, mark, func(line string) {
		// "2024/01/02 03:04:05 [emerg] 123#123: message"
		fields := strings.SplitN(line, " ", 4)
		if len(fields) < 4 {
			return
		}
		fn(fields[2], strings.TrimSpace(line))
	})
}

// tail calls fn with each line of the log at path written after offset
// mark (a Mark). A log now shorter than mark was rotated or truncated and is
// read from the start. Only the last maxTail bytes are read; the line cut
// there is skipped. Anything but a regular file (/dev/stdout, a pipe) has
// no lines.
func tail(path string, mark int64, fn func(line string)) {
	// Stat first: opening a named pipe would wait for a writer.
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	if fi.Size() < mark {
		mark = 0
	}
	// Past maxTail, start one byte early and drop the first line: it is
	// the cut one, or empty when the cut falls just after a newline.
	cut := mark < fi.Size()-maxTail
	if cut {
		mark = fi.Size() - maxTail - 1
	}
	sc := bufio.NewScanner(io.NewSectionReader(f, mark, fi.Size()-mark))
	sc.Buffer(nil, maxTail+1)
	for sc.Scan() {
		if cut {
			cut = false
			continue
		}
		fn(sc.Text())
	}
}
