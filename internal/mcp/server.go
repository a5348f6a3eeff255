package mcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// DefaultProgressInterval is how often a launch that runs longer reports progress
// to a client that sent a progress token.
const DefaultProgressInterval = time.Second

// StartFunc starts the runtime the server launches on (agentexec.New with the
// server's policy and the command's options).
type StartFunc func(ctx context.Context) (*agentexec.Runtime, error)

// Config tunes a Server. Zero fields take the defaults.
type Config struct {
	// Version is the server version reported in initialize.
	Version string
	// Logger receives the server's diagnostics (default: discarded). Never stdout.
	Logger *slog.Logger
	// ShellTool offers the "shell" tool (a script run by the policy's shell: tool)
	// when the policy names one.
	ShellTool bool
	// ProgressInterval is the period of progress notifications (default 1s).
	ProgressInterval time.Duration
}

// ToolInfo is one MCP tool of the server.
type ToolInfo struct {
	// Name is the MCP tool name, Tool the policy tool it runs.
	Name, Tool string
	// Shell marks the shell tool: it takes a script, run as `Tool -c SCRIPT`.
	Shell bool
}

// Server is an MCP server whose tools are a policy's tools. The runtime starts in
// the background (Start), so that a client's initialize and tools/list are
// answered at once; tool calls wait for it.
type Server struct {
	pol   *policy.Policy
	cfg   Config
	log   *slog.Logger
	sdk   *sdk.Server
	tools []ToolInfo
	start StartFunc

	startOnce sync.Once
	startStop context.CancelFunc
	ready     chan struct{}
	rt        *agentexec.Runtime // set before ready is closed
	rtErr     error
	closeOnce sync.Once
	closeErr  error
}

// New builds the MCP server for a resolved policy: one tool per policy tool (and
// the shell tool when cfg.ShellTool and the policy has a shell). start is called
// once, by Start.
func New(pol *policy.Policy, start StartFunc, cfg Config) (*Server, error) {
	if pol == nil || start == nil {
		return nil, errors.New("mcp: New needs a policy and a start function")
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{pol: pol, cfg: cfg, log: cfg.Logger, start: start, ready: make(chan struct{})}
	names := make([]string, len(pol.Tools))
	for i, t := range pol.Tools {
		names[i] = t.Name
	}
	var shell *policy.Tool
	if cfg.ShellTool && pol.Shell != "" {
		t, ok := pol.Tool(pol.Shell)
		if !ok {
			return nil, fmt.Errorf("mcp: policy %s: shell: %q is not one of its tools", pol.Source, pol.Shell)
		}
		shell = t
	}
	mcpNames := toolNames(names, shell != nil)

	s.sdk = sdk.NewServer(&sdk.Implementation{Name: "agentexec", Title: "agentexec sandbox", Version: cfg.Version}, &sdk.ServerOptions{
		Instructions: "Each tool runs one program that the agentexec policy allows, inside a sandbox " +
			"(Landlock, seccomp, cgroup limits). Pass arguments as a list, without a shell. Results carry " +
			"exit_code first, then status, stdout and stderr; a refusal names the policy rule and what would allow it.",
		Logger: slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}),
		Capabilities: &sdk.ServerCapabilities{
			Tools:   &sdk.ToolCapabilities{},
			Logging: &sdk.LoggingCapabilities{}, //nolint:staticcheck // deprecated in 2026-07-28, still in the window; logging/setLevel is a conformance scenario
		},
	})
	outSchema, err := jsonschema.For[Output](nil)
	if err != nil {
		return nil, fmt.Errorf("mcp: output schema: %w", err)
	}
	for i, t := range pol.Tools {
		s.add(ToolInfo{Name: mcpNames[i], Tool: t.Name}, t, outSchema)
	}
	if shell != nil {
		s.add(ToolInfo{Name: mcpNames[len(mcpNames)-1], Tool: shell.Name, Shell: true}, shell, outSchema)
	}
	return s, nil
}

func (s *Server) add(ti ToolInfo, t *policy.Tool, outSchema *jsonschema.Schema) {
	s.tools = append(s.tools, ti)
	ro := readOnly(t.Profile)
	openWorld := t.Profile != nil && (len(t.Profile.Network.ConnectTCP) > 0 || t.Profile.Network.Unix || len(t.Profile.Network.UnixSockets) > 0)
	title := t.Name + " (sandboxed)"
	if ti.Shell {
		title = "shell script via " + t.Name + " (sandboxed)"
	}
	ann := &sdk.ToolAnnotations{Title: title, ReadOnlyHint: ro, OpenWorldHint: &openWorld}
	if !ro {
		ann.DestructiveHint = ptr(true)
	}
	s.sdk.AddTool(&sdk.Tool{
		Name:         ti.Name,
		Title:        title,
		Description:  describe(s.pol, t, ti.Shell),
		InputSchema:  inputSchema(ti.Shell),
		OutputSchema: outSchema,
		Annotations:  ann,
	}, s.handler(ti, t))
}

// readOnly: the profile may write nothing but /dev/null.
func readOnly(p *policy.Profile) bool {
	return p != nil && !slices.ContainsFunc(p.FS.Write, func(w string) bool { return w != "/dev/null" })
}

// Tools lists the server's MCP tools in policy order, the shell tool last
// (tools/list gives them sorted by name).
func (s *Server) Tools() []ToolInfo { return slices.Clone(s.tools) }

// SDKServer is the underlying SDK server (for in-process transports in tests and
// embedders).
func (s *Server) SDKServer() *sdk.Server { return s.sdk }

// Start starts the runtime in the background; it is called once, later calls do
// nothing. ctx bounds the start only.
func (s *Server) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.startStop = context.WithCancel(ctx)
		go func() {
			t0 := time.Now()
			rt, err := s.start(ctx)
			s.rt, s.rtErr = rt, err
			if err != nil {
				s.log.Error("the sandbox runtime did not start; tool calls fail", "err", err)
			} else {
				s.log.Info("sandbox runtime ready", "tools", len(s.tools), "took", time.Since(t0))
			}
			close(s.ready)
		}()
	})
}

// Runtime waits for the runtime Start started (or ctx) and returns it.
func (s *Server) Runtime(ctx context.Context) (*agentexec.Runtime, error) {
	s.Start(context.Background())
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.rtErr != nil {
		return nil, fmt.Errorf("the sandbox runtime failed to start: %w", s.rtErr)
	}
	return s.rt, nil
}

// Close stops a start in progress, then closes the runtime: every launch still
// running is killed.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.Start(context.Background()) // so that ready is always closed
		s.startStop()
		<-s.ready
		if s.rt != nil {
			s.closeErr = s.rt.Close()
		}
	})
	return s.closeErr
}

// RunStdio serves one client on stdin and stdout until the client closes its
// end or ctx is done.
func (s *Server) RunStdio(ctx context.Context) error {
	err := s.sdk.Run(ctx, &sdk.StdioTransport{})
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil //nolint:nilerr // canceled: the normal end of serving
	}
	return err
}

func (s *Server) handler(ti ToolInfo, t *policy.Tool) sdk.ToolHandler {
	return func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		ci := callInfo{mcpName: ti.Name, tool: t.Name, cap: t.OutputBytes, timeout: t.Timeout}
		a, err := decodeArgs(req.Params.Arguments, ti.Shell)
		if err != nil {
			out := &Output{Status: agentexec.StatusError, Tool: t.Name, Error: err.Error()}
			return toolResult(out, "bad arguments, nothing was run: "+err.Error()+ //nolint:nilerr // bad arguments are an isError result, per the MCP spec
				"\nthe input schema is {"+fieldList(ti.Shell)+"}", true), nil
		}
		if a.Timeout > 0 && (ci.timeout == 0 || a.Timeout < ci.timeout) {
			ci.timeout = a.Timeout
		}
		rt, err := s.Runtime(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = errCanceled
			}
			out, text, isErr := render(ci, agentexec.Result{Tool: t.Name}, err)
			return toolResult(out, text, isErr), nil
		}
		r := agentexec.Request{Tool: t.Name, Args: a.Args, Timeout: a.Timeout}
		if ti.Shell {
			r.Args = []string{"-c", a.Script}
		}
		if a.Stdin != nil {
			r.Stdin = strings.NewReader(*a.Stdin)
		}
		if a.Cwd != "" {
			r.Dir = filepath.Join(rt.Policy().Workspace, a.Cwd)
		}
		stop := s.progress(ctx, req, t.Name)
		res, err := rt.Run(ctx, r)
		stop()
		if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
			err = errCanceled
		}
		if err != nil {
			s.log.Debug("call failed", "tool", ti.Name, "err", err)
		}
		out, text, isErr := render(ci, res, err)
		return toolResult(out, text, isErr), nil
	}
}

func fieldList(shell bool) string {
	if shell {
		return "script: string (required), stdin: string, cwd: string, timeout_ms: integer"
	}
	return "args: [string] (required), stdin: string, cwd: string, timeout_ms: integer"
}

func toolResult(out *Output, text string, isError bool) *sdk.CallToolResult {
	return &sdk.CallToolResult{
		Content:           []sdk.Content{&sdk.TextContent{Text: text}},
		StructuredContent: out,
		IsError:           isError,
	}
}

// progress sends notifications/progress every ProgressInterval while a launch
// runs, when the client asked for them with a progress token. The returned stop
// waits until no notification is being sent, so none follows the result.
func (s *Server) progress(ctx context.Context, req *sdk.CallToolRequest, tool string) (stop func()) {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return func() {}
	}
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t0 := time.Now()
		tick := time.NewTicker(s.cfg.ProgressInterval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				el := time.Since(t0)
				err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{
					ProgressToken: token,
					Progress:      el.Seconds(),
					Message:       fmt.Sprintf("%s running for %s", tool, el.Round(100*time.Millisecond)),
				})
				if err != nil {
					s.log.Debug("progress notification failed", "tool", tool, "err", err)
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// minLevel passes on the SDK's records from min up: its info records (one per
// session start and end) would drown the server's own.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.h.WithAttrs(as), m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler { return minLevel{m.h.WithGroup(name), m.min} }
