package outbound

import (
	"context"
	"net"
	"net/netip"
	"syscall"
)

// DialGuarded connects to address (host:port) and refuses, as Open does for SMTP, every
// address the guard refuses: for the relay's clients other than SMTP whose destination a
// tenant names, such as delivery event webhooks (net/http's Transport.DialContext). The
// check runs on the socket's own address, each one tried, so neither DNS nor a redirect
// to a name can lead the connection into the cluster. It resolves with the system
// resolver and honours ConnectTimeout.
func (d *Dialer) DialGuarded(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &Error{Status: "4.4.1", Reason: "bad address " + address, Err: err}
	}
	nd := &net.Dialer{Timeout: d.opts.ConnectTimeout,
		ControlContext: func(_ context.Context, _, resolved string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(resolved)
			if err != nil {
				return err
			}
			if why := d.guard.refuse(ap.Addr()); why != "" {
				return refusal(host, ap.Addr(), why)
			}
			return nil
		}}
	return nd.DialContext(ctx, network, address)
}
