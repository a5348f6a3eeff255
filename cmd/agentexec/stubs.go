package main

import (
	"fmt"
	"os"
)

func cmdServe(args []string) int { fmt.Fprintln(os.Stderr, "agentexec serve: not built yet"); return 2 }
func cmdCI(args []string) int    { fmt.Fprintln(os.Stderr, "agentexec ci: not built yet"); return 2 }
func cmdBench(args []string) int { fmt.Fprintln(os.Stderr, "agentexec bench: not built yet"); return 2 }
