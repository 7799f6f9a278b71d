package dev

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// DNS is an authoritative DNS server on loopback that answers from records added in
// code, and NXDOMAIN for every other name: the relay never asks the system resolver.
type DNS struct {
	srv *dns.Server
	pc  net.PacketConn

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
}

// StartDNS serves UDP on addr (such as 127.0.0.1:0) until Close.
func StartDNS(addr string) (*DNS, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for dns on %s: %w", addr, err)
	}
	d := &DNS{pc: pc, records: map[string][]dns.RR{}}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = d.srv.ActivateAndServe() }()
	<-started
	return d, nil
}

// Addr is the server's host:port.
func (d *DNS) Addr() string { return d.pc.LocalAddr().String() }

// Close stops the server.
func (d *DNS) Close() error { return d.srv.Shutdown() }

// Add adds records in zone-file syntax, such as "example.net. 60 IN MX 10 mx.example.net.".
func (d *DNS) Add(records ...string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil {
			return fmt.Errorf("parsing record %q: %w", text, err)
		}
		name := strings.ToLower(rr.Header().Name)
		d.records[name] = append(d.records[name], rr)
	}
	return nil
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		d.mu.Lock()
		rrs, known := d.records[strings.ToLower(q.Name)]
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		d.mu.Unlock()
		if !known {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}
