package controllers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// txtResolver looks up TXT records for the DNS checks of DKIM, SPF and DMARC, through
// the servers of --dns-servers or, without them, the system's.
type txtResolver struct {
	r *net.Resolver
}

// dnsTimeout bounds one lookup; a check with a slow server reports it as failed.
const dnsTimeout = 5 * time.Second

func newTXTResolver(servers []string) *txtResolver {
	if len(servers) == 0 {
		return &txtResolver{r: net.DefaultResolver}
	}
	var d net.Dialer
	return &txtResolver{r: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		// Each server in turn: the Go resolver dials once per attempt.
		var errs []error
		for _, s := range servers {
			c, err := d.DialContext(ctx, network, s)
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}}}
}

// errNoRecord: the name exists without a TXT record, or does not exist. A check reports it as missing,
// unlike a failed lookup, which says nothing about the record.
var errNoRecord = errors.New("no TXT record")

// lookup returns the TXT records at name, each with its strings joined (RFC 7208 3.3,
// RFC 6376 3.6.2.2).
func (t *txtResolver) lookup(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	// The trailing dot keeps the resolver's search list out of it.
	records, err := t.r.LookupTXT(ctx, strings.TrimSuffix(name, ".")+".")
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound || err == nil && len(records) == 0 {
		return nil, errNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("looking up TXT %s: %w", name, err)
	}
	return records, nil
}
