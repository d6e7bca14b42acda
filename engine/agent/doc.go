// Package agent owns the host agent of MIRRORING.md §1: one process per host, independent of the member processes, that
// supervises the members listed in its configuration and answers for them when they cannot answer for themselves. It
// owns the agent's configuration, the supervision of member processes (start, stop with SIGTERM, kill with SIGKILL as
// the fence of §6, restart of autostarted members that exit on their own), the HTTP JSON API on the agent's port with
// its authentication (§9: mutual TLS, or a shared bearer token; never neither), and the Client the mirror's failover
// state machine uses to reach the agent of another member's host.
//
// It reads, and never writes, what members persist in their data directories: a mirror's state.json (for the role the
// member holds in each mirror) and the mirror journal's segment files, which it serves with the journal package's
// offline reading so that a torn tail is never handed out, even while the member is down or hung. It owns one directory
// there, DATA_DIR/.agent: member binaries installed through it for rolling upgrades (bin/member, the one run instead of
// the configured binary; bin/member.previous, the one it replaced, for a rollback) and installed.json, the versioned
// record of both with their SHA-256, written last as the commit point of an install or rollback. It must not import
// engine/mirror or engine/server (engine/mirror uses this package's Client), and it must not stop the members when the
// agent itself stops: they run on without it.
//
// # API
//
//	GET  /v1/members                                        → [MemberStatus]
//	GET  /v1/members/{name}                                 → MemberStatus
//	POST /v1/members/{name}/start | stop | kill             → MemberStatus once done (kill: the process is gone)
//	GET  /v1/members/{name}/mirrors/{mirror}/journal?from=P → record frames from P to the valid end on disk, with
//	                                                          headers X-Journal-First and X-Journal-End
//	POST /v1/members/{name}/install {"source", "sha256", "restart"} → InstallResult once installed (and restarted)
//	POST /v1/members/{name}/rollback-binary [{"restart"}]   → InstallResult: the previous binary swapped back in
//	GET  /v1/members/{name}/binary                          → BinaryInfo
//
// Errors are JSON {"error": message, "code": code} with status 400 (bad request, bad position or checksum mismatch),
// 401 (caller not authenticated), 404 (unknown member, mirror or install source), 409 (no previous binary to roll back
// to), 410 (position purged) or 500.
package agent
