package relay

import (
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
// cluster's own services unless an admin allows their network.
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
		Dial: dialer.DialGuarded, RootCAs: cfg.RootCAs, MaxDiskBytes: cfg.MaxDiskBytes,
		RetryFirst: cfg.RetryFirst, RetryMax: cfg.RetryMax, GiveUp: cfg.GiveUp,
		Metrics: m, Logger: r.log.With("component", "delivery-events"),
	})
	if err != nil {
		return fmt.Errorf("delivery events: %w", err)
	}
	return nil
}
