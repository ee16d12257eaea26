package nginx

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// AccessLog is an access log whose format records $upstream_addr and
// $upstream_status: which slot answered each proxied request, and how. The
// bake marks it after a switch and reads the share of 5xx answers from the
// new slot.
type AccessLog struct {
	Path   string // the file, absolute
	Format string // the name of its log_format

	line         *regexp.Regexp // a whole line in that format
	addr, status int            // the submatches of $upstream_addr and $upstream_status
}

// AccessLogs returns the access logs of the nginx that conf configures whose
// format records both $upstream_addr and $upstream_status, from the whole
// config as `bin -T -q -c conf` prints it (included files too). The default
// "combined" format records neither; an operator adds one, for example
//
//	log_format edgeswitch '$remote_addr [$time_local] "$request" $status $upstream_addr $upstream_status $request_time';
//	access_log /var/log/nginx/access.log edgeswitch;
//
// Skipped, since their lines cannot be read or are not all the answers:
// access_log off, syslog:, paths with variables, /dev/ and /proc/ paths,
// gzip logs and conditional (if=) logs. A relative path is resolved against
// the build's --prefix. Each file is listed once. None found is no error;
// the error is for an nginx that could not print its config.
func AccessLogs(ctx context.Context, run Runner, bin, conf string) ([]AccessLog, error) {
	dump, err := dumpConfig(ctx, run, bin, conf)
	if err != nil {
		return nil, err
	}

	formats := map[string]string{} // log_format name: its text
	var targets [][]string         // access_log arguments
	for _, d := range dump {
		switch {
		case d[0] == "log_format" && len(d) >= 3:
			strs := d[2:]
			for len(strs) > 0 && strings.HasPrefix(strs[0], "escape=") {
				strs = strs[1:]
			}
			// nginx joins the strings of a format without a separator.
			formats[d[1]] = strings.Join(strs, "")
		case d[0] == "access_log" && len(d) >= 2:
			targets = append(targets, d[1:])
		}
	}

	_, resolve := buildFacts(ctx, run, bin)
	var logs []AccessLog
	seen := map[string]bool{}
	for _, t := range targets {
		path, name, ok := readableLog(t)
		if !ok {
			continue
		}
		format, ok := formats[name]
		if !ok {
			continue // "combined", or a format nginx would not have taken
		}
		l, ok := compileFormat(format)
		if !ok {
			continue
		}
		l.Path, l.Format = resolve(path), name
		if !seen[l.Path] {
			seen[l.Path] = true
			logs = append(logs, l)
		}
	}
	return logs, nil
}

// readableLog returns the path and format name of an access_log directive
// (its arguments: path [format [buffer=] [gzip[=level]] [flush=] [if=]]),
// and false for one whose lines are not all there as text in one file.
func readableLog(args []string) (path, format string, ok bool) {
	path, format = args[0], "combined"
	if path == "off" || strings.HasPrefix(path, "syslog:") || strings.Contains(path, "$") ||
		strings.HasPrefix(path, "/dev/") || strings.HasPrefix(path, "/proc/") {
		return "", "", false
	}
	if len(args) >= 2 {
		format = args[1]
	}
	for _, opt := range args[min(2, len(args)):] {
		if opt == "gzip" || strings.HasPrefix(opt, "gzip=") || strings.HasPrefix(opt, "if=") {
			return "", "", false
		}
	}
	return path, format, true
}

// Mark returns the log's current size, the offset to read from later; 0 when
// the log does not exist yet.
func (l AccessLog) Mark() int64 { return logSize(l.Path) }

// Answers counts the lines written after mark for requests that the
// upstream server addr ("127.0.0.1:4001") answered, and how many of those
// had a 5xx status from it. When nginx tried several servers, $upstream_addr
// and $upstream_status list them all ("127.0.0.1:4000, 127.0.0.1:4001" and
// "502, 200"); a line counts for the last one tried, with its status. Lines
// that do not parse in the log's format are skipped. As with the error log,
// a log shorter than mark was rotated and is read from the start, and at
// most the last MiB is read: on a busy server the counts are those of the
// latest answers. A log with buffer= or flush= shows answers late.
func (l AccessLog) Answers(mark int64, addr string) (total, fiveXX int) {
	if l.line == nil || addr == "" {
		return 0, 0
	}
	tail(l.Path, mark, func(line string) {
		if !strings.Contains(line, addr) {
			return
		}
		m := l.line.FindStringSubmatch(line)
		if m == nil || lastUpstream(m[l.addr]) != addr {
			return
		}
		total++
		if s := lastUpstream(m[l.status]); len(s) == 3 && s >= "500" && s <= "599" {
			fiveXX++
		}
	})
	return total, fiveXX
}

// lastUpstream returns the last entry of an $upstream_* list: nginx
// separates the servers it tried with ", " and the upstream groups of
// internal redirects (error_page, X-Accel-Redirect) with " : ".
func lastUpstream(list string) string {
	for _, sep := range []string{", ", " : "} {
		if i := strings.LastIndex(list, sep); i >= 0 {
			list = list[i+len(sep):]
		}
	}
	return list
}

// Patterns for the value of a variable in a log line. Inside the format's
// own double quotes a value runs to the closing quote (nginx escapes a quote
// in a value as \x22, or \" with escape=json); inside [ ] to the bracket;
// an $upstream_* list may hold ", " and " : "; anything else is one field.
// A value may be empty: escape=json writes "" where the others write "-".
const (
	quotedValue   = `((?:[^"\\]|\\.)*)`
	bracketValue  = `([^\]]*)`
	upstreamValue = `([^\s,]*(?:(?:, | : )[^\s,]+)*)`
	fieldValue    = `(\S*)`
)

// compileFormat turns a log_format string into a regexp that matches a
// whole line written in it, and reports false when the format lacks
// $upstream_addr or $upstream_status.
func compileFormat(format string) (AccessLog, bool) {
	var (
		l                 AccessLog
		re                strings.Builder
		lit               strings.Builder // literal text not written yet
		quoted, bracketed bool
		groups            int
		i                 int
	)
	re.WriteString("^")
	for i < len(format) {
		name, n := variable(format[i:])
		if n == 0 {
			switch c := format[i]; {
			case c == '"':
				quoted = !quoted
			case c == '[' && !quoted:
				bracketed = true
			case c == ']' && !quoted:
				bracketed = false
			}
			lit.WriteByte(format[i])
			i++
			continue
		}
		re.WriteString(regexp.QuoteMeta(lit.String()))
		lit.Reset()
		groups++
		switch {
		case name == "upstream_addr" && l.addr == 0:
			l.addr = groups
		case name == "upstream_status" && l.status == 0:
			l.status = groups
		}
		switch {
		case quoted:
			re.WriteString(quotedValue)
		case bracketed:
			re.WriteString(bracketValue)
		case upstreamList(name):
			re.WriteString(upstreamValue)
		default:
			re.WriteString(fieldValue)
		}
		i += n
	}
	re.WriteString(regexp.QuoteMeta(lit.String()) + "$")
	if l.addr == 0 || l.status == 0 {
		return AccessLog{}, false
	}
	var err error
	if l.line, err = regexp.Compile(re.String()); err != nil {
		return AccessLog{}, false
	}
	return l, true
}

// variable returns the name of the variable s starts with ("$name" or
// "${name}") and its length in s, or 0 when s starts with none.
func variable(s string) (name string, n int) {
	if !strings.HasPrefix(s, "$") {
		return "", 0
	}
	braced := strings.HasPrefix(s, "${")
	start := 1
	if braced {
		start = 2
	}
	end := start
	for end < len(s) && isNameByte(s[end]) {
		end++
	}
	switch {
	case end == start:
		return "", 0
	case !braced:
		return s[start:end], end
	case end < len(s) && s[end] == '}':
		return s[start:end], end + 1
	}
	return "", 0
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// upstreamList reports whether the $upstream_ variable name has an entry
// per server tried, like $upstream_addr, rather than a header's free text.
func upstreamList(name string) bool {
	rest, ok := strings.CutPrefix(name, "upstream_")
	return ok && !strings.HasPrefix(rest, "http_") && !strings.HasPrefix(rest, "cookie_") &&
		!strings.HasPrefix(rest, "trailer_")
}

// dumpConfig runs `bin -T -q -c conf` and returns the simple directives of
// the whole config it prints (see dumpDirectives). The error holds the
// command line and nginx's own message.
func dumpConfig(ctx context.Context, run Runner, bin, conf string) ([][]string, error) {
	args := []string{"-T", "-q", "-c", conf}
	out, err := run(ctx, bin, args...)
	if err != nil {
		cmdline := bin + " " + strings.Join(args, " ")
		if msg := trimOutput(out); msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", cmdline, err, msg)
		}
		return nil, fmt.Errorf("%s: %w", cmdline, err)
	}
	return dumpDirectives(string(out)), nil
}

// dumpHeader is the line nginx -T prints before each config file.
var dumpHeader = regexp.MustCompile(`(?m)^# configuration file .*:$`)

// dumpDirectives returns the simple directives (those that end in ";") of
// an nginx -T dump, each as its name and arguments with quotes and escapes
// resolved as nginx does. Where and how deep they are is not kept. Each
// file is read on its own, and so are nginx's warnings before the first,
// so that text nginx does not read as directives (a *_by_lua_block, a
// warning with a quote in it) costs at most the rest of its file.
func dumpDirectives(dump string) [][]string {
	var all [][]string
	for _, file := range dumpHeader.Split(dump, -1) {
		all = append(all, directives(file)...)
	}
	return all
}

// directives reads the simple directives of one config file, as nginx's
// own tokenizer does: '#' at the start of a token comments out the rest of
// the line, a quote there opens a string, a backslash escapes the next
// byte, and a word ends at white space, ';' or a '{' that does not follow
// '$'. An unterminated string ends the file.
func directives(text string) [][]string {
	var (
		all  [][]string
		args []string
	)
	for i := 0; i < len(text); {
		switch c := text[i]; c {
		case ' ', '\t', '\r', '\n':
			i++
		case '#':
			if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(text)
			}
		case ';':
			if len(args) > 0 {
				all = append(all, args)
			}
			args = nil
			i++
		case '{', '}':
			args = nil
			i++
		case '"', '\'':
			j := i + 1
			for j < len(text) && text[j] != c {
				if text[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(text) {
				return all
			}
			args = append(args, unescape(text[i+1:j]))
			i = j + 1
		default:
			j := i
		word:
			for ; j < len(text); j++ {
				switch text[j] {
				case '\\':
					j++
				case ' ', '\t', '\r', '\n', ';':
					break word
				case '{':
					if text[j-1] != '$' { // j > i: text[i] is no '{'
						break word
					}
				}
			}
			j = min(j, len(text))
			args = append(args, unescape(text[i:j]))
			i = j
		}
	}
	return all
}

// unescape resolves the escapes nginx resolves in a token: \" \' \\ and
// \t \r \n; any other backslash stays.
var unescape = strings.NewReplacer(`\"`, `"`, `\'`, `'`, `\\`, `\`, `\t`, "\t", `\r`, "\r", `\n`, "\n").Replace
