package relay

import (
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/test/testkit"
)

// Without --outbound-allowed-networks the relay neither calls out to nor delivers to a
// managed domain's own server on loopback: the callout defers the recipient, and the
// delivery is deferred with a reason that says what to do.
func TestOutboundGuardRefusesLoopbackUnlessAllowed(t *testing.T) {
	dest := testkit.Start(t)
	f := startFileRelay(t, discoverySnapshot(t, dest), deliverTo(t), func(c *Config) {
		c.OutboundAllowedNetworks = []netip.Prefix{} // none: the guard's default
	})
	waitFor(t, "readiness", f.Ready)

	cl := inbound(t, f.Relay, "x@foreign.example")
	if got := reply(cl.Rcpt("new@covered.example", nil)); got != "450 4.1.1" {
		t.Errorf("RCPT TO:<new@covered.example> = %q, want 450 4.1.1: a callout to loopback tempfails", got)
	}
	if err := cl.Rcpt("bob@plain.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, "From: <x@foreign.example>\r\nSubject: hello\r\n\r\nhello\r\n")
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	_, id, _ := strings.Cut(resp.StatusText, "queued as ")
	id = strings.TrimSpace(id)
	var last string
	waitFor(t, "the delivery attempt to be recorded", func() bool {
		m, err := f.Spool().Get(id)
		if err != nil || len(m.Recipients) == 0 {
			return false
		}
		last = m.Recipients[0].LastReply
		return last != ""
	})
	for _, want := range []string{"4.4.4", "127.0.0.1", "not a public address", "--outbound-allowed-networks"} {
		if !strings.Contains(last, want) {
			t.Errorf("the recipient's last reply %q lacks %q", last, want)
		}
	}
	if n := dest.Connections(); n != 0 {
		t.Errorf("the domain's server saw %d connections", n)
	}
}
