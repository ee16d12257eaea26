package upstream

import (
	"bytes"
	"fmt"
	"strings"
)

// token is one word of nginx's config grammar, or one of the punctuation
// bytes ';', '{' and '}'. Start and End are byte offsets into the source, so
// an edit can replace exactly the bytes a token occupies.
type token struct {
	text       string // the word as nginx sees it: quotes removed, escapes kept
	start, end int
	line       int
	punct      byte // ';', '{' or '}' for punctuation, 0 for a word
}

// scan splits src into tokens the way nginx's ngx_conf_read_token does:
// '#' starts a comment only where a token could start, quotes group a word,
// a backslash escapes the next byte, "${" does not open a block, and '}' in
// the middle of a word belongs to the word. Blocks of *_by_lua_block
// directives hold Lua, not nginx syntax, and are skipped whole.
//
// gonginx has no byte offsets; this scanner is the small piece that has them.
func scan(src []byte) ([]token, error) {
	toks, _, err := scanLua(src)
	return toks, err
}

// scanLua is scan that also returns the byte spans of the Lua block bodies
// it skipped.
func scanLua(src []byte) ([]token, [][2]int, error) {
	var (
		toks  []token
		spans [][2]int
	)
	line := 1
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, token{text: string(c), start: i, end: i + 1, line: line, punct: c})
			i++
			if c == '{' && isLuaBlock(toks) {
				end, err := skipLua(src, i)
				if err != nil {
					return nil, nil, fmt.Errorf("line %d: %w", line, err)
				}
				spans = append(spans, [2]int{i, end})
				line += bytes.Count(src[i:end], []byte{'\n'})
				i = end
			}
		case c == '"' || c == '\'':
			t, err := scanQuoted(src, i, line)
			if err != nil {
				return nil, nil, err
			}
			toks = append(toks, t)
			line += bytes.Count(src[t.start:t.end], []byte{'\n'})
			i = t.end
			if i < len(src) && !strings.ContainsRune(" \t\r\n;{)", rune(src[i])) {
				return nil, nil, fmt.Errorf("line %d: unexpected %q after a quoted string", line, src[i])
			}
		default:
			t := scanWord(src, i, line)
			toks = append(toks, t)
			i = t.end
		}
	}
	return toks, spans, nil
}

func scanQuoted(src []byte, i, line int) (token, error) {
	q := src[i]
	var b strings.Builder
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			if j+1 < len(src) {
				b.WriteByte(src[j])
				j++
			}
		case q:
			return token{text: b.String(), start: i, end: j + 1, line: line}, nil
		}
		b.WriteByte(src[j])
	}
	return token{}, fmt.Errorf("line %d: quoted string never closes", line)
}

func scanWord(src []byte, i, line int) token {
	start := i
	variable := false
	for i < len(src) {
		c := src[i]
		if c == '{' && variable {
			i++
			continue
		}
		variable = false
		switch c {
		case '\\':
			i += 2
			continue
		case '$':
			variable = true
		case ' ', '\t', '\r', '\n', ';', '{':
			return token{text: string(src[start:i]), start: start, end: i, line: line}
		}
		i++
	}
	i = min(i, len(src))
	return token{text: string(src[start:i]), start: start, end: i, line: line}
}

// isLuaBlock reports whether the '{' just appended opens a block of a
// *_by_lua_block directive (e.g. content_by_lua_block).
func isLuaBlock(toks []token) bool {
	if len(toks) < 2 {
		return false
	}
	// The directive name is the first word after the previous ';', '{' or '}'.
	j := len(toks) - 2
	for j > 0 && toks[j-1].punct == 0 {
		j--
	}
	return toks[j].punct == 0 && strings.HasSuffix(toks[j].text, "_by_lua_block")
}

// skipLua returns the offset of the '}' that closes a Lua block opened just
// before i, stepping over Lua strings, long brackets and comments so that
// braces inside them do not count.
func skipLua(src []byte, i int) (int, error) {
	depth := 0
	for i < len(src) {
		switch c := src[i]; {
		case c == '{':
			depth++
		case c == '}':
			if depth == 0 {
				return i, nil
			}
			depth--
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c && src[j] != '\n' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			i = j
		case c == '-' && bytes.HasPrefix(src[i:], []byte("--")):
			if n := longBracket(src[i+2:]); n > 0 {
				i = closeLongBracket(src, i+2, n)
				continue
			}
			for i < len(src) && src[i] != '\n' {
				i++
			}
			continue
		case c == '[':
			if n := longBracket(src[i:]); n > 0 {
				i = closeLongBracket(src, i, n)
				continue
			}
		}
		i++
	}
	return 0, fmt.Errorf("lua block never closes")
}

// longBracket returns the length of a Lua long bracket opener ("[[", "[==[")
// at the start of b, or 0.
func longBracket(b []byte) int {
	if len(b) == 0 || b[0] != '[' {
		return 0
	}
	n := 1
	for n < len(b) && b[n] == '=' {
		n++
	}
	if n < len(b) && b[n] == '[' {
		return n + 1
	}
	return 0
}

// closeLongBracket returns the offset just past the long bracket closer that
// matches the opener of length n at i, or len(src).
func closeLongBracket(src []byte, i, n int) int {
	closer := "]" + strings.Repeat("=", n-2) + "]"
	k := bytes.Index(src[i+n:], []byte(closer))
	if k < 0 {
		return len(src)
	}
	return i + n + k + len(closer)
}
