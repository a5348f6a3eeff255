// Package fleet runs agentexec workers on a NATS cluster: `agentexec worker` and
// the client side of its subjects (docs/fleet.md).
//
//	nc, err := fleet.Connect(fleet.ConnOptions{URL: "nats://a:4222,nats://b:4222"})
//	w, err := fleet.NewWorker(nc, rt, fleet.WorkerConfig{Service: "agentexec", Pool: "default"})
//	err = w.Run(ctx) // until ctx is done; then it drains
//
// A worker is a NATS micro service (name = the service, one instance per worker)
// with two endpoints: the pool subject SERVICE.pool.POOL, in the queue group
// SERVICE.POOL (NATS hands each message to one worker of the pool), and the worker
// subject SERVICE.worker.ID (that worker only: pinned sessions, cancel). A message
// is one line of the serve protocol (docs/protocol.md); the answers are the lines
// serve would write for it, one NATS message each, sent to the message's reply
// subject. Decoding and the result mapping are internal/serve's: every run message
// is served by serve.Serve on an input of that one line, so the JSON, the errors and
// the streaming are serve's. Durable CI jobs go through JetStream (jobs.go): a
// work-queue stream of jobs, a results stream that keeps one result per job.
//
// # Guarantees
//
//   - A plain request is executed at most once. A client that asked for it
//     (header Agentexec-Ack) gets an acceptance naming the worker, and Client turns
//     a worker that stops answering on its subject, or a lost connection, into
//     ErrWorkerLost or ErrConnectionLost instead of a hang.
//   - A CI job is executed at least once (redelivered when a worker dies or stops)
//     and has exactly one recorded result: the results stream refuses a second
//     message on a job's subject.
//
// # Imports
//
// fleet uses the root package's exported API, policy, internal/serve (decoding,
// Serve), internal/ci (Run, Parse) and the NATS client. It must not import
// internal/spawner, internal/sys, internal/cgroup, internal/templates,
// internal/contain or internal/mcp, and the NATS server only in tests.
package fleet
