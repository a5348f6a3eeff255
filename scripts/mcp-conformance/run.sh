#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against
# `agentexec mcp --listen`, then the official inspector CLI against `agentexec mcp`
# over stdio (tools/list and one tools/call). Both come from npm, pinned in
# package-lock.json and installed by `make mcp-conformance` (npm ci); docs/mcp.md.
#
#   scripts/mcp-conformance/run.sh BIN     (BIN: the agentexec binary)
#
# Exits non-zero on a scenario failure not in expected-failures.yaml, on an entry
# there that passes, or on an inspector check that fails. Bounded: every step
# has a timeout, the whole well under 5 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$(realpath "${1:?usage: run.sh AGENTEXEC_BINARY}")
cd "$here"
if [ ! -x node_modules/.bin/conformance ] || [ ! -x node_modules/.bin/mcp-inspector-cli ]; then
	echo "mcp-conformance: node_modules missing: run 'npm ci' here (make mcp-conformance does)" >&2
	exit 2
fi
work=$(mktemp -d /tmp/agentexec-mcp-conformance.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
ws=$work/ws
mkdir -p "$ws"
echo "hello from the workspace" >"$ws/hello.txt"
passed=0 failed=0

# 1. The conformance suite over streamable HTTP.
: >"$work/server.log" # before the server's shell opens it
"$bin" mcp --policy policy.yaml --workspace "$ws" --listen 127.0.0.1:0 --log-level warn 2>"$work/server.log" &
pid=$!
url=""
for _ in $(seq 300); do
	url=$(sed -n 's/^agentexec mcp: listening on \(http:[^ ]*\)$/\1/p' "$work/server.log")
	[ -n "$url" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$url" ]; then
	echo "mcp-conformance: agentexec mcp did not start listening:" >&2
	cat "$work/server.log" >&2
	exit 1
fi
echo "== conformance $(node -p 'require("./node_modules/@modelcontextprotocol/conformance/package.json").version') against $url"
if timeout 240 node_modules/.bin/conformance server --url "$url" --expected-failures expected-failures.yaml -o "$work/results" >"$work/conformance.out" 2>&1; then
	passed=$((passed + 1))
else
	failed=$((failed + 1))
	echo "mcp-conformance: the conformance suite failed (server log follows the output)" >&2
fi
sed -n '/=== SUMMARY ===/,$p' "$work/conformance.out"
if [ "$failed" -gt 0 ]; then
	cat "$work/conformance.out" >&2
	cat "$work/server.log" >&2
fi
kill "$pid" && wait "$pid" || true
pid=""

# 2. The inspector CLI over stdio. inspector-cli 1.0.3 looks for "../package.json"
# relative to the working directory but imports it relative to its own module:
# run it from a directory below this one, whose parent has a package.json.
inspect() {
	mkdir -p "$here/work"
	(cd "$here/work" && timeout 60 ../node_modules/.bin/mcp-inspector-cli --cli \
		"$bin" mcp --policy "$here/policy.yaml" --workspace "$ws" --log-level error "$@" 2>>"$work/inspector.err")
}
check() { # name, node expression over the JSON in $json (variable j)
	if node -e "const j = JSON.parse(process.argv[1]); if (!($2)) process.exit(1)" "$json"; then
		echo "ok   inspector: $1"
		passed=$((passed + 1))
	else
		echo "FAIL inspector: $1: $json" >&2
		cat "$work/inspector.err" >&2
		failed=$((failed + 1))
	fi
}
echo "== inspector-cli $(node -p 'require("./node_modules/@modelcontextprotocol/inspector-cli/package.json").version') over stdio"
json=$(inspect --method tools/list || true)
check "tools/list lists cat, sh, shell and test_error_handling with the args schema" \
	'["cat","sh","shell","test_error_handling"].every(n => j.tools.some(t => t.name === n)) && j.tools.find(t => t.name === "cat").inputSchema.required[0] === "args"'
json=$(inspect --method tools/call --tool-name cat --tool-arg 'args=["hello.txt"]' || true)
check "tools/call cat hello.txt" \
	'j.isError !== true && j.structuredContent.exit_code === 0 && j.structuredContent.stdout === "hello from the workspace\n" && j.content[0].text.startsWith("exit code 0")'
json=$(inspect --method tools/call --tool-name cat --tool-arg 'args=["/etc/hostname"]' || true)
check "tools/call cat outside the roots is refused by Landlock (exit code 1, not a crash)" \
	'j.structuredContent.exit_code === 1 && /Permission denied/.test(j.structuredContent.stderr)'
rm -rf "$here/work"

echo "mcp-conformance: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
