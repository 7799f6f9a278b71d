// Package controllers is the Postwarden operator: it reconciles MailDomains,
// SMTPCredentials, DiscoveryPolicies and TLSDeliveryPolicies into one relay config
// snapshot, issues SMTP credentials, manages the relay's certificate, and reports what
// the relays enforce. The SMTP Discovery loop is package discovery below, which this
// package wires in. docs/operator.md describes the design.
package controllers

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/discovery"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Scheme holds every API type the operator reads or writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(relayv1alpha1.AddToScheme(Scheme))
	utilruntime.Must(certmanagerv1.AddToScheme(Scheme))
}

// OperatorOptions are the operator's command-line settings.
type OperatorOptions struct {
	MetricsAddr    string
	ProbeAddr      string
	LeaderElection bool
	// Namespace is where the operator writes relay config and finds relay replicas.
	Namespace string
	// ConfigName names the config: its shard Secrets are ConfigName-<index>, labelled
	// snapshot.LabelConfig=ConfigName.
	ConfigName string

	// SubmissionHost and SubmissionPort are written into every credential Secret, for
	// clients to connect to. SubmissionHost defaults to the first relay hostname.
	SubmissionHost string
	SubmissionPort int

	// RelayHostnames are the relay's own DNS names, always on its certificate.
	RelayHostnames []string
	// IssuerName, IssuerKind and IssuerGroup name the cert-manager issuer of the relay's
	// certificate. Without IssuerName the operator manages no certificate.
	IssuerName  string
	IssuerKind  string
	IssuerGroup string
	// CertificateName is the cert-manager Certificate the operator owns in Namespace; its
	// Secret is CertificateName-tls.
	CertificateName string

	// DiscoveryMergeInterval bounds how often SMTP Discovery state is merged (default
	// discovery.DefaultMergeInterval). DiscoveryGCAfter is how long a relay must be gone
	// before its observations ConfigMap is deleted (default discovery.DefaultGCAfter).
	DiscoveryMergeInterval time.Duration
	DiscoveryGCAfter       time.Duration
	// ReportRelay is the relay's submission address (host:port) through which the
	// discovery reports are mailed; empty: reports are Events only.
	ReportRelay string
	// ReportRelayServerName is the name the relay's certificate must carry; default: the
	// first relay hostname, else the host of ReportRelay.
	ReportRelayServerName string
	// Clock is SMTP Discovery's time (merges, expiry, report schedule) and the domain
	// claims' (release); nil is the real clock. Tests inject a fake one.
	Clock clock.PassiveClock
	// DomainClaimReleaseAfter is how long a namespace must have had no MailDomain for a
	// domain before its claim on the domain is released (DefaultDomainClaimReleaseAfter).
	DomainClaimReleaseAfter time.Duration

	// DNSServers are the resolvers (host:port) the DKIM, SPF and DMARC checks ask; empty
	// means the system's.
	DNSServers []string
	// DNSCheckInterval is how often the records of a domain whose records are all in
	// place are looked up again (DefaultDNSCheckInterval); until then more often (see
	// pendingDNSCheck).
	DNSCheckInterval time.Duration
	// SPFMechanism is the SPF mechanism a domain's record must hold for mail through the
	// relay to pass SPF, such as ip4:203.0.113.25 or include:_spf.relay.example.net;
	// default a:<first relay hostname>.
	SPFMechanism string

	// tests are settings only tests change (export_test.go).
	tests testSettings
}

// DefaultDomainClaimReleaseAfter keeps a domain with its namespace for a day after its
// last MailDomain is deleted: far longer than a GitOps re-sync that deletes and
// re-creates objects, short enough that a domain given up moves on without an admin.
const DefaultDomainClaimReleaseAfter = 24 * time.Hour

// BindFlags registers the options on fs.
func (o *OperatorOptions) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "elect a leader, so that only one of several replicas reconciles")
	fs.StringVar(&o.Namespace, "namespace", "postwarden-system", "namespace of the relays and their config Secrets")
	fs.StringVar(&o.ConfigName, "config-name", "postwarden-relay-config", "name of the relay config; its shard Secrets are <name>-<index>")
	fs.StringVar(&o.SubmissionHost, "submission-host", "", "host written into credential Secrets for clients to connect to (default: the first --relay-hostnames entry)")
	fs.IntVar(&o.SubmissionPort, "submission-port", 587, "port written into credential Secrets for clients to connect to")
	fs.Func("relay-hostnames", "comma-separated DNS names of the relay, always on its certificate", func(s string) error {
		for h := range strings.SplitSeq(s, ",") {
			if h = strings.TrimSpace(strings.ToLower(h)); h != "" {
				if !snapshot.IsDomain(h) {
					return fmt.Errorf("%q is not a lower-case DNS name", h)
				}
				o.RelayHostnames = append(o.RelayHostnames, h)
			}
		}
		return nil
	})
	fs.StringVar(&o.IssuerName, "issuer-name", "", "cert-manager issuer of the relay certificate; empty: the operator manages no certificate")
	fs.StringVar(&o.IssuerKind, "issuer-kind", "ClusterIssuer", "kind of the cert-manager issuer: Issuer or ClusterIssuer")
	fs.StringVar(&o.IssuerGroup, "issuer-group", "cert-manager.io", "API group of the cert-manager issuer")
	fs.StringVar(&o.CertificateName, "certificate-name", "postwarden-relay", "name of the cert-manager Certificate the operator owns; its Secret is <name>-tls")
	fs.DurationVar(&o.DiscoveryMergeInterval, "discovery-merge-interval", discovery.DefaultMergeInterval, "how often, at most, SMTP Discovery observations are merged into the policies' state")
	fs.DurationVar(&o.DiscoveryGCAfter, "discovery-gc-after", discovery.DefaultGCAfter, "delete a relay's acknowledged discovery observations this long after its Lease expired")
	fs.DurationVar(&o.DomainClaimReleaseAfter, "domain-claim-release-after", DefaultDomainClaimReleaseAfter, "how long a namespace keeps its claim on a domain after its last MailDomain for it is deleted")
	fs.StringVar(&o.ReportRelay, "report-relay", "", "submission address (host:port) of the relay, through which discovery reports are mailed; empty: reports are Events only")
	fs.Func("dns-servers", "comma-separated resolvers (host:port) for the DKIM, SPF and DMARC record checks (default: the system's)", func(s string) error {
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(item); err != nil {
				return fmt.Errorf("%q is not host:port", item)
			}
			o.DNSServers = append(o.DNSServers, item)
		}
		return nil
	})
	fs.DurationVar(&o.DNSCheckInterval, "dns-check-interval", DefaultDNSCheckInterval, "how often a domain's DKIM, SPF and DMARC records are looked up again once they are all in place (until then every 2 minutes for an hour after a change, then every 15 minutes)")
	fs.StringVar(&o.SPFMechanism, "spf-mechanism", "", "the SPF mechanism that names the relay's outbound addresses, which a domain's SPF record must hold, such as ip4:203.0.113.25 (default: a:<first --relay-hostnames entry>)")
	fs.StringVar(&o.ReportRelayServerName, "report-relay-server-name", "", "name to verify on the relay's certificate when mailing reports (default: the first --relay-hostnames entry)")
}

// withDefaults fills in what flags leave empty, for callers that build options in code.
func (o OperatorOptions) withDefaults() OperatorOptions {
	if o.Namespace == "" {
		o.Namespace = "postwarden-system"
	}
	if o.ConfigName == "" {
		o.ConfigName = "postwarden-relay-config"
	}
	if o.SubmissionHost == "" && len(o.RelayHostnames) > 0 {
		o.SubmissionHost = o.RelayHostnames[0]
	}
	if o.SubmissionPort == 0 {
		o.SubmissionPort = 587
	}
	if o.CertificateName == "" {
		o.CertificateName = "postwarden-relay"
	}
	if o.IssuerKind == "" {
		o.IssuerKind = "ClusterIssuer"
	}
	if o.IssuerGroup == "" {
		o.IssuerGroup = "cert-manager.io"
	}
	if o.DomainClaimReleaseAfter <= 0 {
		o.DomainClaimReleaseAfter = DefaultDomainClaimReleaseAfter
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// reportServerName is the name verified on the relay's certificate when mailing reports.
func (o OperatorOptions) reportServerName() string {
	if o.ReportRelayServerName != "" {
		return o.ReportRelayServerName
	}
	if len(o.RelayHostnames) > 0 {
		return o.RelayHostnames[0]
	}
	host, _, err := net.SplitHostPort(o.ReportRelay)
	if err != nil {
		return o.ReportRelay
	}
	return host
}

// spfMechanism is the SPF mechanism a domain's record must hold; "" when the relay has
// no name to say it with.
func (o OperatorOptions) spfMechanism() string {
	if o.SPFMechanism != "" || len(o.RelayHostnames) == 0 {
		return o.SPFMechanism
	}
	return "a:" + o.RelayHostnames[0]
}

// certificateSecretName is the Secret that cert-manager fills for the relay.
func (o OperatorOptions) certificateSecretName() string { return o.CertificateName + "-tls" }

// RunOperator is the `postwarden operator` command.
func RunOperator(ctx context.Context, args []string) error {
	var opts OperatorOptions
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	opts.BindFlags(fs)
	var kubeconfig string
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else the in-cluster service account)")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	cfg, err := loadKubeconfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := NewManager(cfg, opts)
	if err != nil {
		return err
	}
	if err := SetupWithManager(mgr, opts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	// Ready once the informers have synced: before that a replica that wins the election
	// would render from an empty cache. A standby replica is ready too, so that a rollout
	// can proceed; only the leader reconciles.
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		if !mgr.GetCache().WaitForCacheSync(req.Context()) {
			return errors.New("informer caches have not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	ctrl.Log.WithName("operator").Info("starting", "namespace", opts.Namespace, "leaderElection", opts.LeaderElection)
	return mgr.Start(ctx)
}

// loadKubeconfig reads the kubeconfig file named by path or $KUBECONFIG directly, as the
// relay does, and otherwise asks controller-runtime (in-cluster, then ~/.kube/config).
// controller-runtime alone needs $HOME or cgo to look a user up whenever $KUBECONFIG is
// set, and a container has neither.
func loadKubeconfig(path string) (*rest.Config, error) {
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	if path == "" {
		return ctrl.GetConfig()
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

// testSettings are what tests change that no flag does.
type testSettings struct {
	// skipNameValidation lets one process run several managers.
	skipNameValidation bool
	// shardBytes, when not 0, is the largest config shard, small so that tests exercise
	// sharding.
	shardBytes int
	// pendingDNSCheck, when not 0, replaces how soon records not yet in place are
	// looked up again.
	pendingDNSCheck time.Duration
	// staleKeyAge, when not 0, replaces how old an unused DKIM key must be to go.
	staleKeyAge time.Duration
}

// NewManager creates the operator's manager. Its cache holds relay Leases and the
// relay Certificate of the operator namespace only, ConfigMaps of the operator namespace
// only when they hold discovery state (by label), and Secrets as metadata only: the operator never reads a
// whole Secret through the cached client (that would cache every Secret of the
// cluster), but reads the few whose data it needs with the API reader. The relays'
// observation ConfigMaps have a cache of their own (see discovery.Setup).
func NewManager(cfg *rest.Config, opts OperatorOptions) (ctrl.Manager, error) {
	opts = opts.withDefaults()
	byObject := map[client.Object]cache.ByObject{
		&coordinationv1.Lease{}: {
			Namespaces: map[string]cache.Config{opts.Namespace: {}},
			Label:      labels.SelectorFromSet(labels.Set{snapshot.LabelRelayStatus: "true"}),
		},
		&corev1.ConfigMap{}: {
			Namespaces: map[string]cache.Config{opts.Namespace: {}},
			Label:      discovery.StateSelector(),
		},
	}
	installed, err := certManagerInstalled(cfg)
	if err != nil {
		return nil, err
	}
	if installed {
		byObject[&certmanagerv1.Certificate{}] = cache.ByObject{Namespaces: map[string]cache.Config{opts.Namespace: {}}}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress: opts.ProbeAddr,
		LeaderElection:         opts.LeaderElection,
		LeaderElectionID:       "operator.relay.postwarden.dev",
		// The Role grants Leases in the operator namespace only.
		LeaderElectionNamespace: opts.Namespace,
		// The operator is stopped only by its context; release the lease at once so a
		// standby takes over without waiting for it to expire.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cache.Options{ByObject: byObject},
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &opts.tests.skipNameValidation},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	return mgr, nil
}
