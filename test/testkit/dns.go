package testkit

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is an authoritative-looking DNS server on loopback UDP for tests. It answers from
// records added with Add, follows CNAMEs within its own data, answers NXDOMAIN for names
// it holds nothing for, and can be told to fail a name with an rcode or to drop its
// queries (a timeout).
type DNS struct {
	// Addr is the server's 127.0.0.1:port.
	Addr string

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	rcodes  map[string]int
	dropped map[string]bool
}

// StartDNS starts a DNS server that stops when the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testkit: dns listen: %v", err)
	}
	d := &DNS{
		Addr:    pc.LocalAddr().String(),
		records: make(map[string][]dns.RR),
		rcodes:  make(map[string]int),
		dropped: make(map[string]bool),
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	<-started
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return d
}

// Add adds records in zone-file syntax, such as
// "example.com. 300 IN MX 10 mx1.example.com." or "mx1.example.com. A 127.0.0.1".
func (d *DNS) Add(t testing.TB, records ...string) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("testkit: bad record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		d.records[name] = append(d.records[name], rr)
	}
}

// Fail makes every query for name get rcode, such as dns.RcodeServerFailure.
func (d *DNS) Fail(name string, rcode int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rcodes[dns.Fqdn(strings.ToLower(name))] = rcode
}

// Drop makes every query for name go unanswered, so the client times out.
func (d *DNS) Drop(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped[dns.Fqdn(strings.ToLower(name))] = true
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true

	d.mu.Lock()
	if d.dropped[name] {
		d.mu.Unlock()
		return
	}
	if rc, ok := d.rcodes[name]; ok {
		d.mu.Unlock()
		resp.Rcode = rc
		_ = w.WriteMsg(resp)
		return
	}
	for hops := 0; hops < 8; hops++ {
		rrs, exists := d.records[name]
		if !exists {
			if hops == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			break
		}
		var cname string
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
			} else if c, ok := rr.(*dns.CNAME); ok {
				resp.Answer = append(resp.Answer, dns.Copy(rr))
				cname = strings.ToLower(c.Target)
			}
		}
		if cname == "" || q.Qtype == dns.TypeCNAME {
			break
		}
		name = cname
	}
	d.mu.Unlock()
	_ = w.WriteMsg(resp)
}
