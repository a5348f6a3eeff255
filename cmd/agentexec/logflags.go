package main

import (
	"fmt"
	"log/slog"
	"os"
)

// stderrLogger is the stderr logger of the serving commands (serve, mcp, worker)
// from their --log-level and --log-format flags; an error names the flag.
func stderrLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	hopts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q, want text or json", format)
}
