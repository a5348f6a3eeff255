package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serve"
)

func cmdServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	var cfg serve.Config
	fs.IntVar(&cfg.MaxInflight, "max-inflight", serve.DefaultMaxInflight, "run requests launched at once")
	fs.IntVar(&cfg.MaxQueued, "max-queued", 0, "accepted requests waiting for a slot before input reading pauses (default: max-inflight)")
	fs.IntVar(&cfg.MaxLineBytes, "max-line-bytes", serve.DefaultMaxLineBytes, "longest input line accepted, in bytes")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", serve.DefaultDrainTimeout, "at end of input, how long requests in flight may finish before they are killed")
	grace := fs.Duration("kill-grace", 0, "time between SIGTERM and the kill of a canceled or timed-out launch's tree (default: the runtime's, 1s)")
	level := fs.String("log-level", "info", "stderr log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "stderr log format: text or json")
	kernelDenials := fs.Bool("kernel-denials", false, "report what the kernel refused each launch (Landlock, seccomp) in its result, as the policy's kernel_denials: on (docs/denials.md)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentexec serve [flags]   (protocol: docs/protocol.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "agentexec serve: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger, err := stderrLogger(*level, *format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec serve: %v\n", err)
		return 2
	}
	cfg.Logger, cfg.Version = logger, version

	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec serve: %v\n", err)
		return 1
	}
	// A reader that closes our stdout must not kill us with SIGPIPE: the write
	// fails instead, and the server kills its launches and exits.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal takes the default action
	}()
	opts := []agentexec.Option{agentexec.WithLogger(logger)}
	if *grace > 0 {
		opts = append(opts, agentexec.WithKillGrace(*grace))
	}
	if *kernelDenials {
		opts = append(opts, agentexec.WithKernelDenials())
	}
	in, restore := pollableStdin()
	defer restore()
	if err := serve.Run(ctx, p, in, os.Stdout, cfg, opts...); err != nil {
		logger.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// pollableStdin returns stdin as a file with read deadlines when it is a pipe or a
// socket: a dup of fd 0 in non-blocking mode. serve.Serve then stops reading at the
// end of a shutdown without taking a line off the pipe that it would not answer
// (docs/protocol.md, "Lifecycle"). restore puts the descriptor back in blocking
// mode (the mode is shared with whoever else holds the pipe).
func pollableStdin() (in io.Reader, restore func()) {
	fi, err := os.Stdin.Stat()
	if err != nil || fi.Mode()&(os.ModeNamedPipe|os.ModeSocket) == 0 {
		return os.Stdin, func() {}
	}
	fd, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return os.Stdin, func() {}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return os.Stdin, func() {}
	}
	f := os.NewFile(uintptr(fd), "stdin") // non-blocking: pollable, with deadlines
	return f, func() {
		_ = unix.SetNonblock(fd, false)
		f.Close()
	}
}
