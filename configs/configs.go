// Package configs holds agentexec's example policies, embedded in the binary.
//
// default.yaml is the policy the agentexec binary uses without --policy: common
// read-only tools inside the current directory. agent.yaml, ci.yaml and readonly.yaml
// are starting points for a coding agent, a CI job and a strictly read-only
// assistant. Every file here is loaded by the policy package's tests.
package configs

//go:generate go run ./gen

import "embed"

// FS holds every policy in this directory (default.yaml, agent.yaml, ci.yaml,
// readonly.yaml), by file name.
//
//go:embed *.yaml
var FS embed.FS

// Default is default.yaml, the embedded default policy.
//
//go:embed default.yaml
var Default []byte

// DefaultName is the name the embedded default policy goes by in errors and reports.
const DefaultName = "default.yaml"
