//go:build unix

package spool

import (
	"os"
	"syscall"
)

// openFile is os.OpenFile for the spool's regular files, without what os.OpenFile does
// to make a descriptor pollable: for a regular file it sets O_NONBLOCK, fails to add it
// to epoll and clears the flag again, five system calls per open, which cost more than
// the open itself in a virtual machine where system calls are dear. os.NewFile leaves a
// blocking descriptor out of the poller, for one fcntl.
func openFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
