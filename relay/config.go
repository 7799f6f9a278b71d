package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/postwarden/postwarden/relay/internal/smtpd"
)

// Config is everything the relay is started with. Exactly one of ConfigFile and
// KubeConfigName says where the snapshot comes from.
type Config struct {
	// Hostname is the relay's name in greetings and Received: headers; it also picks
	// the certificate for clients that send no SNI.
	Hostname   string
	Submission Listener
	Inbound    Listener
	// TrustedProxies are the networks whose PROXY protocol headers are believed.
	TrustedProxies     []netip.Prefix
	ProxyHeaderTimeout time.Duration
	// OutboundAllowedNetworks may be delivered and called out to although they are not
	// public (--outbound-allowed-networks); see outboundGuard.
	OutboundAllowedNetworks []netip.Prefix

	// ConfigFile is a snapshot document (standalone use).
	ConfigFile string
	// SecretsDir holds, for a ConfigFile, the relay secrets the config names: the
	// credentials the domains' hops log in with, the keys their delivery events are
	// signed with and their DKIM private keys, <dir>/<name>/<key> (see
	// configsource.File).
	SecretsDir string
	// KubeConfigName is the snapshot.LabelConfig value of the shard Secrets in Namespace,
	// read through Kube.
	KubeConfigName string
	Namespace      string
	Kube           kubernetes.Interface
	// PodName names the status Lease and the discovery observations ConfigMap
	// (Kubernetes only; neither when empty).
	PodName string
	// PodUID, when set, makes the Pod the owner of the observations ConfigMap, so that
	// it goes with the pod.
	PodUID string
	// LeaseDuration is the status Lease's duration (30 s when zero).
	LeaseDuration time.Duration

	// TLSCertFile and TLSKeyFile are a certificate served besides the snapshot's.
	TLSCertFile, TLSKeyFile string

	SpoolDir string
	// AdminSocket is the Unix socket of `postwarden queue` (--admin-socket); "" turns
	// it off. It belongs in the spool volume, the one place a relay in its chart's pod
	// may write.
	AdminSocket string
	Limits      smtpd.Limits
	// Delivery, when set, runs the queue runner; nil keeps accepted mail in the spool.
	Delivery *DeliveryConfig
	// Discovery tunes SMTP Discovery's callouts and publication.
	Discovery DiscoveryConfig

	// HTTPAddr serves /metrics, /healthz and /readyz; "" disables it.
	HTTPAddr string
	// ProfileAddr serves Go's runtime profiles (net/http/pprof, /debug/pprof/) on a
	// listener of its own, for profiling a relay under load; "" (the default) disables
	// it. It must be a loopback address: reach it with kubectl port-forward.
	ProfileAddr string
	// DrainDelay is how long the relay keeps serving after it reports not ready, so load
	// balancers stop sending new connections before the listeners close.
	DrainDelay time.Duration
	// GracePeriod is how long sessions in a mail transaction may take to finish at
	// shutdown.
	GracePeriod time.Duration

	Logger *slog.Logger
}

func (cfg *Config) check() error {
	var errs []error
	if cfg.Hostname == "" {
		errs = append(errs, errors.New("a hostname is required"))
	}
	if (cfg.ConfigFile == "") == (cfg.KubeConfigName == "") {
		errs = append(errs, errors.New("exactly one of a config file and a Kubernetes config name is required"))
	}
	if cfg.KubeConfigName != "" && (cfg.Kube == nil || cfg.Namespace == "") {
		errs = append(errs, errors.New("a Kubernetes config needs a client and a namespace"))
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		errs = append(errs, errors.New("a TLS certificate file needs its key file, and the other way round"))
	}
	if cfg.SpoolDir == "" {
		errs = append(errs, errors.New("a spool folder is required"))
	}
	if cfg.Submission.Addr == "" && cfg.Inbound.Addr == "" {
		errs = append(errs, errors.New("at least one SMTP listener is required"))
	}
	if (cfg.Submission.Proxy || cfg.Inbound.Proxy) && len(cfg.TrustedProxies) == 0 {
		errs = append(errs, errors.New("the PROXY protocol needs the trusted proxy networks"))
	}
	if cfg.ProfileAddr != "" {
		// Profiles show the relay's internals (goroutines, allocation sites, command
		// line): for an admin at the pod only.
		host, _, err := net.SplitHostPort(cfg.ProfileAddr)
		if ip := net.ParseIP(host); err != nil || host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("profile address %q: the profile server listens on loopback only (127.0.0.1:<port> or [::1]:<port>); reach it with kubectl port-forward", cfg.ProfileAddr))
		}
	}
	return errors.Join(errs...)
}
