// Package testpki makes throwaway certificate authorities for tests: a CA and member certificates written as PEM files
// into a test's temporary directory, ready to be used as [wire.TLSFiles].
//
// It owns only the files it writes into its own directory; it never touches product configuration or code paths.
package testpki
