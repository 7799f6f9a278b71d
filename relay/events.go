package relay

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/postwarden/postwarden/relay/internal/webhook"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// eventsDir is the folder of the spool volume that holds delivery events not sent yet.
const eventsDir = "events"

// newEvents builds the sender of delivery events. Its POSTs dial through the same
// non-public address guard as delivery: the URL is a tenant's, and must not reach the
// cluster's own services unless an admin allows their network. They verify the
// endpoints' certificates against the view's roots: the system roots, plus the CAs of
// --delivery-events-ca-file, loaded and reloaded with the config (see eventRoots).
func (r *Relay) newEvents(cfg *EventsConfig) error {
	m, err := webhook.NewMetrics(r.registry)
	if err != nil {
		return err
	}
	dialer := outbound.New(outbound.Options{
		AllowedNetworks: r.cfg.OutboundAllowedNetworks, DeniedNetworks: r.outboundDenied,
		ConnectTimeout: webhook.DefaultTimeout,
	})
	r.events, err = webhook.New(webhook.Options{
		Dir: filepath.Join(r.cfg.SpoolDir, eventsDir),
		Resolve: func(domain string) (*snapshot.Webhook, []byte) {
			return r.reload.View().DeliveryEvents(domain)
		},
		RootCAs: func() *x509.CertPool { return r.reload.View().EventRoots() },
		Dial:    dialer.DialGuarded, MaxDiskBytes: cfg.MaxDiskBytes,
		RetryFirst: cfg.RetryFirst, RetryMax: cfg.RetryMax, GiveUp: cfg.GiveUp,
		Metrics: m, Logger: r.log.With("component", "delivery-events"),
	})
	if err != nil {
		return fmt.Errorf("delivery events: %w", err)
	}
	return nil
}

// eventRootsFrom returns the system roots with the certificates of the PEM bundle
// added, never instead of them, and how many it added. Each CERTIFICATE block must
// parse, and there must be one at least; blocks of other types are skipped.
func eventRootsFrom(bundle []byte) (*x509.CertPool, int, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool() // the system has no roots: the bundle's are all there are
	}
	n := 0
	for rest := bundle; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("delivery events CA bundle: certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("delivery events CA bundle: no PEM certificate in it")
	}
	return pool, n, nil
}
