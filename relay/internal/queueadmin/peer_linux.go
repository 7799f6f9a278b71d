package queueadmin

import (
	"net"
	"syscall"
)

// peerOf reads the credentials of the process at the other end of a Unix socket
// (SO_PEERCRED), as the kernel recorded them when it connected: they cannot be forged
// by the client.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return unknownPeer
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return unknownPeer
	}
	p := unknownPeer
	_ = raw.Control(func(fd uintptr) {
		cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
		if err == nil {
			p = peer{UID: int(cred.Uid), PID: int(cred.Pid), known: true}
		}
	})
	return p
}
