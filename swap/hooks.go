package swap

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// runHook runs a hook command (an argv list, no shell) with the switch in
// its environment, and returns the last line of its output for the progress
// line, or an error with its command line and output.
func (s *switcher) runHook(ctx context.Context, argv []string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"EDGESWITCH_UPSTREAM="+s.o.Upstream,
		"EDGESWITCH_FROM="+strconv.Itoa(s.res.From.Port),
		"EDGESWITCH_TO="+strconv.Itoa(s.res.To.Port),
	)
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		return "", fmt.Errorf("hook %q: %w: %s", strings.Join(argv, " "), err, text)
	}
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	return strings.Join(argv, " ") + ": ok " + text, nil
}
