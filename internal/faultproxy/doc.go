// Package faultproxy is a TCP proxy for tests that sits between two members and injects network faults switched at run time:
// one-way delay, a bandwidth limit, a cut (connections reset, new ones refused) and a black hole (a partition: connections stay
// open but nothing gets through). It owns only its listener and the connections it accepted and dialled; it knows nothing of the
// protocol it carries and no production code imports it.
package faultproxy
