// `ferry help TOPIC`: what no single command's --help says. Kept short; docs/ has the long form.

export const TOPICS: Record<string, string> = {
  'exit-codes': `
Exit codes (every command)

  0  ok
  1  failed (an error ferry did not expect, or a migration that failed and needs an operator)
  2  invalid request: nothing was attempted (a usage error: unknown option, missing --to or
     --host, missing argument; an unknown host, workload or migration id; an --ip outside the
     workload subnet or of the infrastructure; an incompatible destination)
  3  a migration rolled back: the workload still runs on its source host
     (migrate, and watch ID of a rolled-back migration)
  4  a peer could not be reached: NATS, the coordinator or an agent; ps when a host did not
     answer or a lost host may still run workloads; run when a name or address may still be in
     use on a lost host

ferry launch exits with its workload's own exit status when the workload ends, with the
requeue code (--requeue-exit, default 85) after a checkpoint on the signal, 143 after SIGTERM or
SIGINT, and 1, 2 or 4 as above when it fails (docs/hpc.md).

With --json, a failure is {"error": {"code", "message", "retryable"}} on stdout.
`,
  json: `
JSON output

Every command takes --json and then prints one JSON document on stdout; its JSON Schema is in
docs/schemas/ (docs/schemas/README.md lists which command prints which). Times are ISO 8601
strings in UTC everywhere; durations are numbers of milliseconds in fields ending in Ms; sizes
are numbers of bytes.

Streams:
  ferry migrate --json   stdout: the final report (a migration view), one document.
                         stderr: progress, one JSON event per line; the first is
                         {"type": "migration.accepted", "migrationId": ...}, then phase.entered,
                         round, ..., migration.ended (schema: migration-event.json).
  ferry watch --json     stdout: one JSON event per line; \`watch ID\` of an ended migration
                         prints its final report instead.
Failures: {"error": {"code", "message", "retryable"}} on stdout, and the exit code of its kind.
`,
  lab: `
The lab

\`ferry lab up [--hosts N]\` builds N hosts on this machine as network namespaces joined by a
bridge, plus a client namespace, and starts nats-server, the coordinator and one agent per host.
Workloads get addresses from 10.77.1.1 up (the coordinator's workloadNetwork setting); 10.77.0.x
is the lab's own (switch 10.77.0.1, client 10.77.0.2, hosts 10.77.0.11 and up).

  FERRY_LAB=<name>          another lab beside the default one ("lab")
  ferry lab status [--json] every namespace, address and daemon
  ferry lab kill|start D    crash a daemon (coordinator, coordinator2, h1, ...) and start it again
  ferry lab down            remove all of it; safe to run twice
`,
  migration: `
Migrations

  ferry migrate NAME --to HOST   live migration: pre-copy rounds while NAME runs, then a short
                                 freeze; --stop-and-copy freezes first.
  ferry status [ID] / history    in flight / every recorded one
  ferry watch [ID]               events live; with ID until it ends
  ferry cancel ID                before the commit point it rolls back; after, it completes

A migration either completes (the workload runs on HOST, exit 0) or rolls back (it still runs on
its source, exit 3). Nothing is frozen before every check passed. See docs/migration-statechart.md.
`,
  addresses: `
Workload addresses

Each workload gets an IPv4 address of its own from the coordinator's workloadNetwork setting:
{ "subnet": "10.77.0.0/16", "first": "10.77.1.1", "last": ..., "reserved": [...] }.
\`ferry run --ip A\` must name an address inside that range; an address of the infrastructure
(hosts, NATS servers, reserved ones), the network or broadcast address, or one outside the
subnet is refused (exit 2). A name or address in use is refused (exit 2); one that may still be
in use on a lost host is refused with exit 4 until the host is back. A workload that exits
gives its address back.
`,
};
