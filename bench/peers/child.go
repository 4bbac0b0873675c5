package peers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// RunGeneratorChild is the generator child a bench command runs as
// (Config.GeneratorCommand): it reads one Rush from in, runs it against
// the edge the Rush names, and writes the outcome to out, until the rush
// ends or the process is interrupted.
func RunGeneratorChild(in io.Reader, out io.Writer) error {
	var r Rush
	if err := json.NewDecoder(in).Decode(&r); err != nil {
		return fmt.Errorf("generator: cannot read the rush: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := GenerateHTTP(ctx, r)
	if err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	if err := json.NewEncoder(out).Encode(res); err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	return nil
}

// ParseInts reads a comma-separated list of numbers (a flag's value).
func ParseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
