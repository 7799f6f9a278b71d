//go:build !unix

package spool

import "os"

func rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
