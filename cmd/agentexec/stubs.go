package main

import (
	"fmt"
	"os"
)

func cmdBench(args []string) int { fmt.Fprintln(os.Stderr, "agentexec bench: not built yet"); return 2 }
