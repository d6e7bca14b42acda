//go:build !linux

package miniotest

import "syscall"

// sysProcAttr keeps the server out of the terminal's process group. Without a parent-death signal outside Linux, a
// server outlives a test binary that crashes.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
