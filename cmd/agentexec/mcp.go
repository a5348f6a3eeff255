//go:build !agentexec_lean

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/mcp"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func cmdMCP(args []string) int {
	fs := flag.NewFlagSet("mcp", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	listen := fs.String("listen", "", "serve streamable HTTP on `HOST:PORT` at /mcp (default: stdio); a non-loopback host needs a token")
	tokenFile := fs.String("token-file", "", "`FILE` holding the bearer token HTTP clients must send (default: $AGENTEXEC_MCP_TOKEN)")
	var origins stringList
	fs.Var(&origins, "allow-origin", "browser `ORIGIN` allowed to call the HTTP server (repeatable; default: none)")
	noShell := fs.Bool("no-shell-tool", false, "do not offer the shell tool even when the policy names a shell")
	sessionTimeout := fs.Duration("session-timeout", mcp.DefaultSessionTimeout, "close HTTP sessions idle this long (their calls are killed)")
	grace := fs.Duration("kill-grace", 0, "time between SIGTERM and the kill of a canceled or timed-out launch's tree (default: the runtime's, 1s)")
	level := fs.String("log-level", "info", "stderr log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "stderr log format: text or json")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentexec mcp [flags]   (Model Context Protocol server: docs/mcp.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "agentexec mcp: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger, err := stderrLogger(*level, *format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec mcp: %v\n", err)
		return 2
	}

	hc := mcp.HTTPConfig{AllowedOrigins: origins, SessionTimeout: *sessionTimeout}
	if *listen != "" {
		tok, err := readToken(*tokenFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentexec mcp: %v\n", err)
			return 2
		}
		hc.Token = tok
		if err := mcp.CheckListen(*listen, tok != ""); err != nil {
			fmt.Fprintf(os.Stderr, "agentexec mcp: %v\n", err)
			return 2
		}
	} else if *tokenFile != "" || len(origins) > 0 {
		fmt.Fprintln(os.Stderr, "agentexec mcp: --token-file and --allow-origin apply to --listen only")
		return 2
	}

	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec mcp: %v\n", err)
		return 1
	}
	opts := []agentexec.Option{agentexec.WithLogger(logger)}
	if *grace > 0 {
		opts = append(opts, agentexec.WithKillGrace(*grace))
	}
	s, err := mcp.New(p, func(ctx context.Context) (*agentexec.Runtime, error) {
		return agentexec.New(ctx, p, opts...)
	}, mcp.Config{Version: version, Logger: logger, ShellTool: !*noShell})
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec mcp: %v\n", err)
		return 1
	}
	// A client that closes our stdout must not kill us with SIGPIPE: the write
	// fails instead, the session ends and the launches are killed.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal takes the default action
	}()
	s.Start(context.Background())

	if *listen == "" {
		err = s.RunStdio(ctx)
	} else {
		err = serveHTTP(ctx, s, *listen, hc, logger)
	}
	if cerr := s.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close runtime: %w", cerr))
	}
	if err != nil {
		logger.Error("mcp failed", "err", err)
		return 1
	}
	return 0
}

// serveHTTP serves the streamable HTTP transport at /mcp until ctx is done.
func serveHTTP(ctx context.Context, s *mcp.Server, addr string, hc mcp.HTTPConfig, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", s.HTTPHandler(hc))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	// The line scripts wait for (the port, when PORT was 0).
	fmt.Fprintf(os.Stderr, "agentexec mcp: listening on http://%s/mcp\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close() // streams still open (SSE): cut them
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// readToken reads the bearer token from file, or from $AGENTEXEC_MCP_TOKEN when
// file is "" ("" when neither is set). The token is never printed.
func readToken(file string) (string, error) {
	tok := os.Getenv("AGENTEXEC_MCP_TOKEN")
	src := "AGENTEXEC_MCP_TOKEN"
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok, src = strings.TrimSpace(string(b)), "--token-file "+file
		if tok == "" {
			return "", fmt.Errorf("%s: the token is empty", src)
		}
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: the token holds white space", src)
	}
	return tok, nil
}
