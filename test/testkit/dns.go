package testkit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DNS is an authoritative-looking DNS server on UDP for tests and the dev environment.
// It answers from records added with Add or AddRecords, follows CNAMEs within its own
// data, answers NXDOMAIN for names it holds nothing for (so a relay pointed at it never
// asks the system's resolver), and can be told to fail a name with an rcode or to drop
// its queries (a timeout).
type DNS struct {
	// Addr is the server's host:port, such as 127.0.0.1:53535.
	Addr string

	srv     *dns.Server
	done    chan struct{}
	close   sync.Once
	queries atomic.Int64

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	rcodes  map[string]int
	dropped map[string]bool
}

// NewDNSServer serves UDP on addr (such as 127.0.0.1:0) until Close.
func NewDNSServer(addr string) (*DNS, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("testkit: listening for dns on %s: %w", addr, err)
	}
	d := &DNS{
		Addr:    pc.LocalAddr().String(),
		done:    make(chan struct{}),
		records: make(map[string][]dns.RR),
		rcodes:  make(map[string]int),
		dropped: make(map[string]bool),
	}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	go func() {
		defer close(d.done)
		_ = d.srv.ActivateAndServe()
	}()
	<-started
	return d, nil
}

// StartDNS starts a DNS server on 127.0.0.1 that stops when the test ends.
func StartDNS(t TB) *DNS {
	t.Helper()
	d, err := NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// Close stops the server and waits until it has.
func (d *DNS) Close() error {
	var err error
	d.close.Do(func() {
		err = d.srv.Shutdown()
		<-d.done
	})
	return err
}

// AddRecords adds records in zone-file syntax, such as
// "example.com. 300 IN MX 10 mx1.example.com." or "mx1.example.com. A 127.0.0.1".
func (d *DNS) AddRecords(records ...string) error {
	rrs := make([]dns.RR, 0, len(records))
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			return fmt.Errorf("testkit: bad record %q: %w", s, err)
		}
		rrs = append(rrs, rr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rr := range rrs {
		name := strings.ToLower(rr.Header().Name)
		d.records[name] = append(d.records[name], rr)
	}
	return nil
}

// Add is AddRecords for tests: it fails t on a bad record.
func (d *DNS) Add(t TB, records ...string) {
	t.Helper()
	if err := d.AddRecords(records...); err != nil {
		t.Fatalf("%v", err)
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

// TXTRecord is a TXT record at name in zone-file syntax, for AddRecords, with value
// split into the strings of at most 255 bytes that DNS carries, as DNS software does
// with a long DKIM record.
func TXTRecord(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, strconv.Quote(value[:255]))
		value = value[255:]
	}
	parts = append(parts, strconv.Quote(value))
	return dns.Fqdn(name) + " 300 IN TXT " + strings.Join(parts, " ")
}

// LookupTXT asks the server for the TXT records at name over the network, as a
// resolver pointed at it would, with each record's strings joined: the lookup a DKIM
// verifier (go-msgauth's VerifyOptions.LookupTXT) makes.
func (d *DNS) LookupTXT(name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, network, d.Addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.LookupTXT(ctx, dns.Fqdn(name))
}

// Remove deletes every record at name, as a DNS admin deleting them would: the name
// then answers NXDOMAIN.
func (d *DNS) Remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.records, dns.Fqdn(strings.ToLower(name)))
}

// Queries returns how many queries the server has received, answered or not.
func (d *DNS) Queries() int64 { return d.queries.Load() }

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	d.queries.Add(1)
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

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
