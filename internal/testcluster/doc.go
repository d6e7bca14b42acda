// Package testcluster runs several real member processes for end-to-end tests, each on its own loopback IP (127.0.0.11,
// 127.0.0.12, …), with a fault proxy in front of any member for any other member. It owns the members' data directories,
// configuration files and proxies for the life of one test, and stops them all at cleanup. It starts processes only through
// internal/memberproc and faults only through internal/faultproxy; no production code imports it.
package testcluster
