// Package serve implements `agentexec serve`: a JSON-lines executor that reads
// requests from an input stream, launches them on an agentexec Runtime, many at
// once, and writes one result object per line. docs/protocol.md is the protocol's
// reference and docs/protocol.schema.json its JSON Schema.
//
//	rt, err := agentexec.New(ctx, pol)
//	…
//	err = serve.Serve(ctx, rt, os.Stdin, os.Stdout, serve.Config{Logger: logger})
//
// # Guarantees
//
//   - Every output line is one whole JSON object, written whole, one write at a time,
//     in the order emitted (writer.go); lines never interleave. Results come in
//     completion order.
//   - Every run request with a valid id is answered by exactly one result line (or,
//     when it is refused before launch for a protocol reason, one error line).
//   - An input line that cannot be accepted (invalid JSON, over the size limit, an
//     unknown field, a wrong type, a missing or duplicate id) is answered with one
//     error line naming its line number, and reading goes on.
//   - At the end of the input, requests in flight finish (up to Config.DrainTimeout,
//     then they are killed) and Serve returns nil.
//   - Every input line read gets exactly one answer, also while the server stops
//     (ctx done, a failed write): lines read then are answered with shutting_down.
//     With an input that has read deadlines (the command's stdin pipe), no line is
//     taken off the input without an answer.
//   - Decoding is strict: field names are case-sensitive, a key may appear once,
//     strings must be valid UTF-8 (strict.go).
//
// It owns the JSON-lines protocol (decoding, framing, results, stats) and its
// server. It uses only the root package's exported API and policy; it must not
// import spawner, cgroup, contain, templates or sys.
package serve
