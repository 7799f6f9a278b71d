//go:build unix

package spool

import (
	"os"
	"syscall"
)

// rename is os.Rename without its check that newpath is not a directory: an lstat per
// rename, which the committer does for every message, and never needed here since the
// spool names every file it renames to.
func rename(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}
