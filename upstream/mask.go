package upstream

import "bytes"

// mask returns src as gonginx must see it: same length, same line breaks,
// so byte offsets and line numbers stay, while the byte scanner keeps
// working on the original src. gonginx's lexer parts from nginx's where
// nginx accepts the config, and mask hides those places:
//
//   - Lua in *_by_lua_block bodies, read with nginx's rules (a brace in a
//     Lua string trips it): the bodies are blanked out.
//   - An escaped '{', '}', ';', space or tab in an unquoted word, which
//     gonginx takes as the word's end (`location /\} {}`): the escaped byte
//     becomes '_', so gonginx reads `/\_`.
//   - An escaped backslash in quotes, where gonginx knows only `\"`, so in
//     "a\\" it reads `\"` as an escaped quote and runs past the string's end:
//     the second backslash becomes '_', so gonginx reads "a\_".
//
// A word read through a mask is not the file's word; for a server address
// locateOne's check against the scanner then refuses the edit.
func mask(src []byte) ([]byte, error) {
	lua := bytes.Contains(src, []byte("_by_lua_block"))
	if !lua && !hasMaskedEscape(src) {
		return src, nil
	}
	toks, spans, err := scanLua(src)
	if err != nil {
		return src, err
	}
	out := bytes.Clone(src)
	for _, sp := range spans {
		for i := sp[0]; i < sp[1]; i++ {
			if out[i] != '\n' {
				out[i] = ' '
			}
		}
	}
	for _, t := range toks {
		if t.punct != 0 {
			continue
		}
		quoted := src[t.start] == '"' || src[t.start] == '\''
		for i := t.start; i < t.end-1; i++ {
			if src[i] != '\\' {
				continue
			}
			i++ // the escaped byte
			if (quoted && src[i] == '\\') || (!quoted && isWordBreak(src[i])) {
				out[i] = '_'
			}
		}
	}
	return out, nil
}

// hasMaskedEscape reports whether src has a backslash followed by a byte
// mask may change, the cheap test that spares most files the scan.
func hasMaskedEscape(src []byte) bool {
	for {
		i := bytes.IndexByte(src, '\\')
		if i < 0 || i+1 == len(src) {
			return false
		}
		if c := src[i+1]; c == '\\' || isWordBreak(c) {
			return true
		}
		src = src[i+2:]
	}
}

// isWordBreak reports whether gonginx ends an unquoted word at c, where
// nginx keeps an escaped c in the word. Line breaks are left alone.
func isWordBreak(c byte) bool {
	return c == '{' || c == '}' || c == ';' || c == ' ' || c == '\t'
}
