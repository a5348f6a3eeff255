#!/usr/bin/env bash
# bench-compare.sh BEFORE AFTER [RUNS] [BENCH FLAGS...]: run `agentexec bench -json`
# with two agentexec binaries, interleaved (before, after, before, …) so that both
# see the same machine, RUNS times each (default 10), and compare the runs with
# benchstat (docs/performance.md, "Before and after"). Reports stay in
# $OUT (default: a new temporary directory).
set -euo pipefail
before=$1 after=$2 runs=${3:-10}
shift $(( $# < 3 ? $# : 3 ))
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-skip-extras -calls 20)
cd "$(dirname "$0")/.."
out=${OUT:-$(mktemp -d /tmp/agentexec-bench-compare.XXXXXX)}
mkdir -p "$out"
[ -x bin/tools/benchstat ] || GOBIN=$PWD/bin/tools go install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
for i in $(seq 1 "$runs"); do
	for which in before after; do
		bin=$before; [ $which = after ] && bin=$after
		"$bin" bench -json "${flags[@]}" > "$out/$which-$i.json" 2>/dev/null
		echo "run $i $which done" >&2
	done
done
go run ./scripts/benchfmt "$out"/before-*.json > "$out/before.txt"
go run ./scripts/benchfmt "$out"/after-*.json > "$out/after.txt"
echo "# bench-compare: $before vs $after, $runs runs each, flags: ${flags[*]}; reports in $out"
bin/tools/benchstat "$out/before.txt" "$out/after.txt"
