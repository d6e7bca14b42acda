package main

import "syscall"

// childAttr puts a process the benchmark starts in its own process group, so that an interrupt reaches only the
// benchmark, which then stops its processes in order (a stopped member must be continued first); and has the kernel
// kill it should the benchmark die without doing so.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
