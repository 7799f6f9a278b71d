package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/mx"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// DeliveryConfig configures the queue runner that delivers what the spool holds.
type DeliveryConfig struct {
	// DNSServers are the resolvers (host:port) for MX lookups; empty means those of
	// /etc/resolv.conf.
	DNSServers []string
	// Smarthost (host:port), when set, takes all mail for unmanaged domains instead of
	// their MX hosts.
	Smarthost string
	// MXPort is the port of MX hosts (25 when zero); tests point it elsewhere.
	MXPort int
	// Workers bounds deliveries at once, PerDestination those to one domain.
	Workers, PerDestination int
	// Retry is the schedule of attempts; zero fields take delivery.DefaultRetry's.
	Retry delivery.Retry
	// DrainTimeout is how long deliveries in progress may finish at shutdown.
	DrainTimeout time.Duration
	// InflowDelay is the longest a transaction waits for delivery to catch up
	// (delivery.Runner.Pace); 0 never waits.
	InflowDelay time.Duration
	// Events tunes the delivery events sender; zero fields take webhook's defaults.
	Events EventsConfig
}

// EventsConfig tunes the sender of delivery events (relay/internal/webhook).
type EventsConfig struct {
	// MaxDiskBytes bounds the events waiting in the spool volume.
	MaxDiskBytes int64
	// RetryFirst and RetryMax are the backoff of a failing endpoint, GiveUp how old an
	// event may become unsent.
	RetryFirst, RetryMax, GiveUp time.Duration
	// CAFile is a PEM bundle of CAs that the endpoints' certificates are verified
	// against besides the system roots (--delivery-events-ca-file), for endpoints with a
	// private CA; it is read with the config and reloaded when it changes. Empty: the
	// system roots alone.
	CAFile string
}

// newDelivery builds the queue runner; metrics are registered once, here.
func (r *Relay) newDelivery(cfg *DeliveryConfig) error {
	resolver, err := mx.New(cfg.DNSServers, 0)
	if err != nil {
		return fmt.Errorf("dns resolver: %w", err)
	}
	resolver.EnableCache(10000, 5*time.Minute)
	r.resolver = resolver
	m, err := delivery.NewMetrics(r.registry)
	if err != nil {
		return fmt.Errorf("delivery metrics: %w", err)
	}
	log := r.log.With("component", "delivery")
	r.deliveryClient, err = delivery.NewClient(delivery.ClientOptions{
		HELOName: r.cfg.Hostname, Resolver: resolver, Port: cfg.MXPort, Metrics: m, Logger: log,
		AllowedNetworks: r.cfg.OutboundAllowedNetworks, DeniedNetworks: r.outboundDenied,
	})
	if err != nil {
		return fmt.Errorf("delivery client: %w", err)
	}
	var smarthost *delivery.Target
	if cfg.Smarthost != "" {
		host, portText, err := net.SplitHostPort(cfg.Smarthost)
		port, perr := strconv.Atoi(portText)
		if err != nil || perr != nil || port < 1 || port > 65535 {
			return fmt.Errorf("smarthost %q is not host:port", cfg.Smarthost)
		}
		// Admin-named: the non-public address guard does not apply to it.
		smarthost = &delivery.Target{Host: host, Port: port, AdminNamed: true}
	}
	if err := r.newEvents(&cfg.Events); err != nil {
		return err
	}
	r.runner, err = delivery.NewRunner(delivery.RunnerOptions{
		Spool: r.spool, Client: r.deliveryClient, View: r.reload.View, Loaded: r.reload.Loaded(), Smarthost: smarthost,
		Workers: cfg.Workers, PerDestination: cfg.PerDestination, Retry: cfg.Retry,
		Hostname: r.cfg.Hostname, DrainTimeout: cfg.DrainTimeout, InflowDelay: cfg.InflowDelay, Metrics: m, Logger: log,
		// Set before Run, by newDiscovery.
		Delivered: func(rcpt, direction string) { r.discovery.Delivered(rcpt, direction) },
		Events:    r.events,
	})
	if err != nil {
		return fmt.Errorf("delivery runner: %w", err)
	}
	return nil
}

// startDelivery starts the queue runner, if the relay delivers, and returns a function
// that stops it and waits until every outcome is in the spool.
func (r *Relay) startDelivery(ctx context.Context) (stop func()) {
	if r.runner == nil {
		r.log.Info("delivery is off: accepted messages stay in the spool", "spool", r.cfg.SpoolDir)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	// The events sender outlives the runner, so it stores the last outcomes' events.
	eventsCtx, stopEvents := context.WithCancel(context.Background())
	var wg, eventsWG sync.WaitGroup
	eventsWG.Go(func() { r.events.Run(eventsCtx) })
	wg.Go(func() {
		if err := r.runner.Run(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("delivery stopped", "error", err)
		}
	})
	return func() {
		cancel()
		wg.Wait()
		stopEvents()
		eventsWG.Wait()
		if err := r.deliveryClient.Close(); err != nil {
			r.log.Warn("closing delivery connections", "error", err)
		}
	}
}

// outboundGuard sets up what delivery and callouts refuse: addresses that are not public
// (loopback, private, link-local and the other special-purpose ranges) when DNS or a
// MailDomain's inboundDelivery names them, and in a cluster the cluster's own networks,
// unless they are in OutboundAllowedNetworks. The smarthost, named by the admin, is
// exempt.
func (r *Relay) outboundGuard() {
	if r.cfg.KubeConfigName != "" {
		r.outboundDenied = clusterNetworks()
	}
	r.log.Info("delivery and callouts refuse non-public addresses outside the allowed networks",
		"allowed", r.cfg.OutboundAllowedNetworks, "deniedClusterNetworks", r.outboundDenied)
}

// clusterNetworks are the networks of the relay's own interfaces and the address of the
// Kubernetes API Service. In a cluster they are refused as outbound destinations besides
// the special-purpose ranges, for clusters that number pods and Services from public
// ranges; --outbound-allowed-networks still wins.
func clusterNetworks() []netip.Prefix {
	var out []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil {
					out = append(out, p.Masked())
				}
			}
		}
	}
	if a, err := netip.ParseAddr(os.Getenv("KUBERNETES_SERVICE_HOST")); err == nil {
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// leaseAnnotations is what the status Lease reports besides the hash: the hops whose
// login failed lately, so the operator can tell their MailDomains' owners, the
// credentials refused for a sending limit, so it can tell theirs, and what the busiest
// credentials sent, for their status.
func (r *Relay) leaseAnnotations() map[string]string {
	var failures []snapshot.LoginFailure
	if r.deliveryClient != nil {
		failures = r.deliveryClient.LoginFailures()
	}
	return map[string]string{
		snapshot.AnnotationLoginFailures:   jsonAnnotation(failures),
		snapshot.AnnotationLimitHits:       jsonAnnotation(r.limitHits.Recent(time.Now())),
		snapshot.AnnotationCredentialUsage: jsonAnnotation(r.sendLimits.Busiest(snapshot.MaxUsageReports)),
	}
}

// jsonAnnotation encodes a report for a Lease annotation; "" (which removes the
// annotation) when there is nothing to report.
func jsonAnnotation[T any](items []T) string {
	if len(items) == 0 {
		return ""
	}
	data, err := json.Marshal(items)
	if err != nil {
		return "" // cannot happen: plain strings and times
	}
	return string(data)
}
