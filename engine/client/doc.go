// Package client is the Go client library of the member data port. A Client keeps a small pool of connections to one
// address, spreads requests over them and pipelines them (many requests in flight per connection, matched to their
// responses by request id), and redials a connection that broke on its next use.
//
// Do sends one Request (one transaction on one database). The convenience methods and Txn take references as text
// (^Orders(42,"total")), encode them with package globals, and refuse a bad reference before anything is sent.
//
// The package only speaks the protocol of package wire; it holds no data and must not reach into server internals.
package client
