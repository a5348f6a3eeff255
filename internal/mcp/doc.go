// Package mcp implements `agentexec mcp`: the sandbox as a Model Context Protocol
// server, on the official Go SDK (github.com/modelcontextprotocol/go-sdk).
// docs/mcp.md is its reference.
//
//	pol, _ := policy.Load("agent.yaml", policy.HostOptions())
//	s, err := mcp.New(pol, func(ctx context.Context) (*agentexec.Runtime, error) {
//		return agentexec.New(ctx, pol)
//	}, mcp.Config{Version: "1.0"})
//	…
//	s.Start(ctx)      // the runtime starts in the background; initialize is answered at once
//	defer s.Close()
//	err = s.RunStdio(ctx)
//
// # What it owns
//
//   - The mapping of policy tools to MCP tools: names valid for the strictest
//     clients ([A-Za-z0-9_-]{1,64}) with a fixed collision rule, descriptions drawn
//     from the policy, one input schema {args, stdin, cwd, timeout_ms} (a shell tool
//     takes a script instead of args).
//   - Strict decoding of tool arguments (unknown fields, duplicate keys and wrong
//     types are errors that name the field).
//   - Results: structured content (exit code first) plus a text rendering; denials,
//     launch failures and timeouts are isError results.
//   - Progress notifications for long launches and the transports: stdio, and
//     streamable HTTP with Origin, Host and bearer-token checks.
//
// # What it must not import
//
// It is another face over the same agentexec.Runtime as `serve` (docs/design.md,
// "MCP and fleet reuse the runtime"), never a second engine: it uses only the root
// package's public API (New, Run, Request, Result, DeniedError, LaunchError,
// NewResultJSON) and package policy. It must not import internal/spawner,
// internal/templates, internal/cgroup, internal/contain, internal/sys or
// internal/serve.
package mcp
