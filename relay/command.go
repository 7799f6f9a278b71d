// Package relay is the Postwarden SMTP relay: submission on 587, the inbound gateway on
// 25, a durable spool and delivery. Its configuration comes from a relay/snapshot
// document, loaded from a file or from Secrets written by the operator, and is reloaded
// without a restart: each update is compiled once into a compiled.View that the
// sessions, delivery and discovery all read.
package relay

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/discovery"
	"github.com/postwarden/postwarden/relay/internal/proxyproto"
	"github.com/postwarden/postwarden/relay/internal/queuecli"
	"github.com/postwarden/postwarden/relay/internal/smtpd"
	"github.com/postwarden/postwarden/relay/internal/webhook"
)

// serviceAccountNamespace holds the pod's namespace inside a cluster.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// RunCommand is the `postwarden relay` command.
func RunCommand(ctx context.Context, args []string) error {
	cfg, logger, err := parseFlags(args)
	if err != nil {
		return err
	}
	r, err := New(cfg)
	if err != nil {
		return err
	}
	logger.Info("relay starting", "hostname", cfg.Hostname)
	return r.Run(ctx)
}

// parseFlags turns the command line into a Config, a Kubernetes client included.
func parseFlags(args []string) (Config, *slog.Logger, error) {
	fs := flag.NewFlagSet("postwarden relay", flag.ContinueOnError)
	defaults := smtpd.DefaultLimits()
	hostname, _ := os.Hostname()
	var (
		cfg                       Config
		trusted, kubeconfig       string
		outboundAllowed           string
		logLevel, logFormat       string
		limits                    = &cfg.Limits
		submissionProxy, inboundP bool
		deliver                   bool
		dnsServers                string
		dc                        DeliveryConfig
	)
	fs.StringVar(&cfg.Submission.Addr, "submission-listen", ":587", "submission listener address (STARTTLS and AUTH); empty disables it")
	fs.StringVar(&cfg.Inbound.Addr, "inbound-listen", ":25", "inbound listener address (mail for managed domains); empty disables it")
	fs.BoolVar(&submissionProxy, "submission-proxy-protocol", false, "expect a PROXY protocol header on the submission listener from --trusted-proxies")
	fs.BoolVar(&inboundP, "inbound-proxy-protocol", false, "expect a PROXY protocol header on the inbound listener from --trusted-proxies")
	fs.StringVar(&trusted, "trusted-proxies", "", "comma-separated CIDRs of load balancers whose PROXY headers are believed")
	fs.DurationVar(&cfg.ProxyHeaderTimeout, "proxy-header-timeout", proxyproto.DefaultHeaderTimeout, "how long a trusted proxy has to send its PROXY header")
	fs.StringVar(&cfg.Hostname, "hostname", hostname, "the relay's name in greetings and Received: headers; picks the certificate for clients without SNI")

	fs.StringVar(&cfg.ConfigFile, "config", "", "snapshot document to load and watch (standalone use)")
	fs.StringVar(&cfg.SecretsDir, "relay-secrets-dir", "", "with --config: folder of the relay secrets the config names (route credentials, delivery event keys, DKIM keys), <dir>/<name>/<key>")
	fs.StringVar(&cfg.KubeConfigName, "kube-config-name", "", "read the snapshot from the Secrets labelled "+
		"relay.postwarden.dev/config=NAME in --namespace")
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace of the config Secrets and the status Lease (default: the pod's)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else the in-cluster service account)")
	fs.StringVar(&cfg.PodName, "pod-name", os.Getenv("POD_NAME"), "pod name for the status Lease (default: $POD_NAME); empty: no Lease")
	fs.StringVar(&cfg.PodUID, "pod-uid", os.Getenv("POD_UID"), "pod UID, to make the pod the owner of its discovery observations ConfigMap (default: $POD_UID)")
	fs.DurationVar(&cfg.LeaseDuration, "lease-duration", 30*time.Second, "duration of the status Lease; it is renewed every third of it")
	fs.DurationVar(&cfg.Discovery.CommandTimeout, "discovery-command-timeout", discovery.DefaultCommandTimeout, "how long a verification callout waits for each reply")
	fs.DurationVar(&cfg.Discovery.CalloutTimeout, "discovery-callout-timeout", discovery.DefaultCalloutTimeout, "how long a whole verification callout may take")
	fs.DurationVar(&cfg.Discovery.ShipInterval, "discovery-publish-interval", discovery.DefaultShipInterval, "how often discovery observations are published to the operator (Kubernetes only)")

	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "PEM certificate chain served besides the snapshot's certificates")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&cfg.SpoolDir, "spool-dir", queuecli.DefaultSpoolDir, "folder of the durable message spool")
	fs.StringVar(&cfg.AdminSocket, "admin-socket", adminSocketDefault, "Unix socket for postwarden queue (mode 0600); empty turns it off")

	fs.BoolVar(&deliver, "delivery", true, "deliver the spool's mail; false keeps it in the spool")
	fs.StringVar(&dnsServers, "dns-servers", "", "comma-separated resolvers (host:port) for MX lookups (default: /etc/resolv.conf)")
	fs.StringVar(&dc.Smarthost, "smarthost", "", "host:port that takes all mail for unmanaged domains instead of their MX hosts")
	fs.StringVar(&outboundAllowed, "outbound-allowed-networks", "", "comma-separated CIDRs that delivery and discovery callouts may connect to "+
		"although they are not public (loopback, private, link-local...); the smarthost needs none")
	fs.IntVar(&dc.MXPort, "mx-port", 25, "port of MX hosts")
	fs.IntVar(&dc.Workers, "delivery-workers", delivery.DefaultWorkers, "messages delivered at once")
	fs.IntVar(&dc.PerDestination, "delivery-per-destination", delivery.DefaultPerDestination, "SMTP transactions at once to one recipient domain")
	fs.DurationVar(&dc.Retry.First, "retry-first", delivery.DefaultRetry.First, "delay before the first retry; later ones double")
	fs.DurationVar(&dc.Retry.Max, "retry-max", delivery.DefaultRetry.Max, "longest delay between retries")
	fs.DurationVar(&dc.Retry.Lifetime, "queue-lifetime", delivery.DefaultRetry.Lifetime, "how long a message is retried before it bounces")
	fs.DurationVar(&dc.Retry.DelayNotice, "delay-notice", delivery.DefaultRetry.DelayNotice, "age at which the sender is told once that delivery is delayed; negative: never")
	fs.DurationVar(&dc.DrainTimeout, "delivery-drain-timeout", delivery.DefaultDrainTimeout, "at shutdown, how long deliveries in progress may finish")
	fs.DurationVar(&dc.InflowDelay, "inflow-delay", delivery.DefaultInflowDelay,
		"longest a transaction waits at RCPT while delivery to its destination does not keep up (Postfix's in_flow_delay); 0 never waits")
	fs.Int64Var(&dc.Events.MaxDiskBytes, "delivery-events-max-bytes", webhook.DefaultMaxDiskBytes, "bytes of delivery events kept in the spool volume while their endpoints fail")
	fs.DurationVar(&dc.Events.GiveUp, "delivery-events-give-up", webhook.DefaultGiveUp, "age at which a delivery event still not accepted by its endpoint is dropped")
	fs.StringVar(&dc.Events.CAFile, "delivery-events-ca-file", "", "PEM bundle of CAs that delivery event endpoints' certificates are verified against "+
		"besides the system roots (for endpoints with a private CA); reloaded when it changes")

	fs.Int64Var(&limits.MaxMessageBytes, "max-message-bytes", defaults.MaxMessageBytes, "largest message accepted, in bytes")
	fs.IntVar(&limits.MaxRecipients, "max-recipients", defaults.MaxRecipients, "recipients per message")
	fs.IntVar(&limits.MaxConnections, "max-connections", defaults.MaxConnections, "concurrent connections per listener")
	fs.IntVar(&limits.MaxConnectionsPerIP, "max-connections-per-ip", defaults.MaxConnectionsPerIP, "concurrent connections per client IPv4 address or IPv6 /64")
	fs.IntVar(&limits.MaxConnectionsPerNetwork, "max-connections-per-network", defaults.MaxConnectionsPerNetwork, "concurrent connections per client IPv4 /24 or IPv6 /48")
	fs.IntVar(&limits.MaxConnectionRatePerIP, "max-connection-rate-per-ip", defaults.MaxConnectionRatePerIP, "new connections a minute per client IPv4 address or IPv6 /64")
	fs.DurationVar(&limits.CommandTimeout, "command-timeout", defaults.CommandTimeout, "how long to wait for each SMTP command")
	fs.DurationVar(&limits.DataTimeout, "data-timeout", defaults.DataTimeout, "how long a message's DATA may take")
	fs.IntVar(&limits.JunkCommandLimit, "junk-command-limit", defaults.JunkCommandLimit, "commands a connection may send outside a mail transaction since its last accepted message")
	fs.DurationVar(&limits.MaxSessionLifetime, "max-session-lifetime", defaults.MaxSessionLifetime, "age at which a connection is ended between commands")

	fs.StringVar(&cfg.HTTPAddr, "http-listen", ":9090", "address of /metrics, /healthz and /readyz; empty disables it")
	fs.StringVar(&cfg.ProfileAddr, "profile-listen", "", "loopback address (such as 127.0.0.1:6060) serving Go's runtime profiles at /debug/pprof/; empty (the default) disables it")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", 0, "at shutdown, keep serving this long after /readyz fails, so load balancers stop sending first")
	fs.DurationVar(&cfg.GracePeriod, "grace-period", 30*time.Second, "at shutdown, how long sessions in a mail transaction may take to finish")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "json", "json or text")
	if err := fs.Parse(args); err != nil {
		return Config{}, nil, err
	}
	if fs.NArg() > 0 {
		return Config{}, nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Submission.Proxy, cfg.Inbound.Proxy = submissionProxy, inboundP
	if cfg.AdminSocket == adminSocketDefault {
		cfg.AdminSocket = DefaultAdminSocket(cfg.SpoolDir)
	}
	if deliver {
		for item := range strings.SplitSeq(dnsServers, ",") {
			if item = strings.TrimSpace(item); item != "" {
				dc.DNSServers = append(dc.DNSServers, item)
			}
		}
		cfg.Delivery = &dc
	}

	logger, err := newLogger(logLevel, logFormat)
	if err != nil {
		return Config{}, nil, err
	}
	cfg.Logger = logger
	if cfg.TrustedProxies, err = parsePrefixes("--trusted-proxies", trusted); err != nil {
		return Config{}, nil, err
	}
	if cfg.OutboundAllowedNetworks, err = parsePrefixes("--outbound-allowed-networks", outboundAllowed); err != nil {
		return Config{}, nil, err
	}
	if cfg.KubeConfigName != "" {
		klog.SetSlogLogger(logger.With("component", "client-go")) // one log format, not two
		if cfg.Namespace == "" {
			ns, err := os.ReadFile(serviceAccountNamespace)
			if err != nil {
				return Config{}, nil, errors.New("--namespace is required outside a pod")
			}
			cfg.Namespace = strings.TrimSpace(string(ns))
		}
		if kubeconfig == "" {
			kubeconfig = os.Getenv("KUBECONFIG")
		}
		rest, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return Config{}, nil, fmt.Errorf("kubernetes client config: %w", err)
		}
		rest.UserAgent = "postwarden-relay"
		if cfg.Kube, err = kubernetes.NewForConfig(rest); err != nil {
			return Config{}, nil, fmt.Errorf("kubernetes client: %w", err)
		}
	}
	return cfg, logger, nil
}

// parsePrefixes parses the comma-separated CIDRs or addresses of the flag name.
func parsePrefixes(name, list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			// A bare address means itself alone.
			addr, aerr := netip.ParseAddr(item)
			if aerr != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR or an address", name, item)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q is not json or text", format)
}
