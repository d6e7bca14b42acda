package miniotest

import "syscall"

// sysProcAttr kills the server when the test process dies and keeps it out of the terminal's process group, so an
// interrupt reaches the test binary, which then takes the server down with it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
