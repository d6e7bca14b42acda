// Package client is the Go client library of the member data port. A Client keeps a small pool of connections to the
// member of a mirror it believes is primary, spreads requests over them and pipelines them (many requests in flight per
// connection, matched to their responses by request id), and redials a connection that broke on its next use.
//
// The Client is mirror-aware: given the addresses of several members (DialMirror), it follows a member's NotPrimary
// redirect or tries the others in turn when a request is refused without being executed or cannot be sent, and re-sends
// it, so a failover looks like a pause to the application. Moving to another member replaces the pool; the old one closes
// once its requests in flight are answered. Only requests that are safe to repeat are re-sent when a connection broke
// after they left, because their outcome is unknown. Concurrent calls that fail on the same member share one search.
//
// Do sends one Request (one transaction on one database). The convenience methods and Txn take references as text
// (^Orders(42,"total")), encode them with package globals, and refuse a bad reference before anything is sent.
//
// The package only speaks the protocol of package wire; it holds no data and must not reach into server internals.
package client
