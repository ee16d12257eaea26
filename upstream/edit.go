package upstream

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/aymanbagabas/go-udiff"
)

// ErrTarget means the requested port is not one of the slots.
var ErrTarget = fmt.Errorf("target is not a slot")

// Edit is the byte-minimal change that leaves one slot listed: the bytes of
// Block.File before and after, and the spans that changed.
type Edit struct {
	File     string
	Old, New []byte
	edits    []udiff.Edit
}

// Changed reports whether the edit changes anything.
func (e *Edit) Changed() bool { return len(e.edits) > 0 }

// Diff renders the edit as a unified diff labelled with the file's path.
func (e *Edit) Diff() string {
	if !e.Changed() {
		return ""
	}
	d, err := udiff.ToUnified(e.File, e.File, string(e.Old), e.edits, udiff.DefaultContextLines)
	if err != nil {
		// The edits come from this package and are sorted and in range.
		panic(fmt.Sprintf("upstream: diff of own edit: %v", err))
	}
	return d
}

// To computes the edit that makes target the only slot of the block.
//
// The server line of target is kept as it is; if none lists it (or it is
// marked backup or down), the first other line gets the new address (only
// its port, when the host stays) and keeps its parameters, spacing and
// comment. Every other server line is removed whole, with its line break
// when it stands alone on its line. No other byte changes.
func (b *Block) To(target string, slots Slots) (*Edit, error) {
	if !slots.Has(target) {
		return nil, fmt.Errorf("%w: %s (slots are %s)", ErrTarget, target, slots)
	}
	keep := b.keep(target)
	if keep < 0 {
		return nil, fmt.Errorf("%s:%d: every server of upstream %s is marked backup or down, so none can carry the traffic alone; remove the flag from one",
			b.File, b.Line, b.Name)
	}
	var edits []udiff.Edit
	for i, s := range b.Servers {
		switch {
		case i != keep:
			start, end := lineSpan(b.Src, s.start, s.end)
			edits = append(edits, udiff.Edit{Start: start, End: end})
		case s.Slot != target:
			edits = append(edits, b.readdress(s, target))
		}
	}
	out, err := udiff.ApplyBytes(b.Src, edits)
	if err != nil {
		return nil, fmt.Errorf("upstream: apply own edit to %s: %w", b.File, err)
	}
	return &Edit{File: b.File, Old: b.Src, New: out, edits: edits}, nil
}

// keep picks the server line that stays: target's own line, unless it is
// marked backup or down (alone, nginx would refuse it or send it nothing);
// then the first line that is neither, which gets the new port. It returns
// -1 when every line is marked.
func (b *Block) keep(target string) int {
	first := -1
	for i, s := range b.Servers {
		if s.Standby {
			continue
		}
		if s.Slot == target {
			return i
		}
		if first < 0 {
			first = i
		}
	}
	return first
}

// readdress is the edit that points server s at target: only the port's
// digits when the host stays the same, else the whole address.
func (b *Block) readdress(s Server, target string) udiff.Edit {
	a := s.addr
	host, _, err := splitPort(s.Slot)
	thost, tport, terr := splitPort(target)
	if err != nil || terr != nil || host != thost {
		return udiff.Edit{Start: a.start, End: a.end, New: target}
	}
	colon := a.start + strings.LastIndexByte(string(b.Src[a.start:a.end]), ':')
	end := colon + 1
	for end < a.end && b.Src[end] >= '0' && b.Src[end] <= '9' {
		end++
	}
	return udiff.Edit{Start: colon + 1, End: end, New: strconv.Itoa(tport)}
}

// lineSpan widens the directive [start, end) to what removing it should
// remove: the whole line with its break (and trailing comment) when the
// directive stands alone on its line; otherwise the directive and the blanks
// that separate it from its neighbours on the line.
func lineSpan(src []byte, start, end int) (int, int) {
	ls := start
	for ls > 0 && isBlank(src[ls-1]) {
		ls--
	}
	le := end
	for le < len(src) && isBlank(src[le]) {
		le++
	}
	eol := le
	if eol < len(src) && src[eol] == '#' {
		eol = len(src)
		if i := bytes.IndexByte(src[le:], '\n'); i >= 0 {
			eol = le + i
		}
	}
	if eol < len(src) && src[eol] == '\r' && eol+1 < len(src) && src[eol+1] == '\n' {
		eol++
	}
	atEOL := eol == len(src) || src[eol] == '\n'
	switch {
	case (ls == 0 || src[ls-1] == '\n') && atEOL:
		return ls, min(eol+1, len(src))
	case le == len(src) || src[le] == '\n' || src[le] == '\r':
		return ls, le
	}
	return start, le
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }
