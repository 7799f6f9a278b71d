// Package dev is Postwarden's local development environment, the `postwarden dev`
// command that `make run` starts: an embedded control plane (kube-apiserver and etcd,
// with Postwarden's and cert-manager's CRDs), the operator, a stand-in for cert-manager's
// CA issuer, a relay with delivery on, a loopback DNS server and a stand-in mail
// server, all in one process and on loopback only. The end-to-end tests start it too.
package dev

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay"
	"github.com/postwarden/postwarden/test/testkit"
)

// Fixed names of the dev environment.
const (
	OperatorNamespace = "postwarden-system"
	ConfigName        = "postwarden-relay-config"
	CertificateName   = "postwarden-relay"
	IssuerName        = "postwarden-dev-ca"
	RelayHostname     = "localhost"
	RelayPodName      = "postwarden-dev-relay"
)

// Options configure the environment. Zero values take the defaults shown.
type Options struct {
	// Dir holds the CA, the kubeconfig, the spool, the sink and the log (default ./.dev).
	Dir string
	// SubmissionAddr (127.0.0.1:2587), InboundAddr (127.0.0.1:2525), SinkAddr
	// (127.0.0.1:2526) and HTTPAddr (127.0.0.1:9090): ":0" ports pick a free port.
	SubmissionAddr, InboundAddr, SinkAddr, HTTPAddr string
	// SamplesNamespace receives config/samples (default mail); NoSamples applies none.
	SamplesNamespace string
	NoSamples        bool
	// NoSmarthost sends outbound mail to the MX hosts of the loopback DNS server (at
	// MXPort) instead of the sink.
	NoSmarthost bool
	MXPort      int
	// Out gets progress lines and the sink's report of each mail (default os.Stdout).
	Out io.Writer
	// Logger gets the relay's logs (default: text to Dir/postwarden.log).
	Logger *slog.Logger
	// DiscoveryPublishInterval (how often the relay publishes SMTP Discovery
	// observations) and DiscoveryMergeInterval (how often the operator merges them)
	// default to 2 s and 5 s, shorter than in a cluster, so discovery shows at once.
	DiscoveryPublishInterval, DiscoveryMergeInterval time.Duration
}

func (o Options) withDefaults() Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Dir, ".dev")
	def(&o.SubmissionAddr, "127.0.0.1:2587")
	def(&o.InboundAddr, "127.0.0.1:2525")
	def(&o.SinkAddr, "127.0.0.1:2526")
	def(&o.HTTPAddr, "127.0.0.1:9090")
	def(&o.SamplesNamespace, "mail")
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.DiscoveryPublishInterval <= 0 {
		o.DiscoveryPublishInterval = 2 * time.Second
	}
	if o.DiscoveryMergeInterval <= 0 {
		o.DiscoveryMergeInterval = 5 * time.Second
	}
	return o
}

// Info is what a user needs to send a first mail; `postwarden dev --info FILE` writes it
// as JSON.
type Info struct {
	Submission     string `json:"submission"`
	Inbound        string `json:"inbound"`
	Username       string `json:"username,omitempty"`
	Password       string `json:"password,omitempty"`
	Sender         string `json:"sender,omitempty"`
	LocalRecipient string `json:"localRecipient,omitempty"`
	CAFile         string `json:"caFile"`
	Kubeconfig     string `json:"kubeconfig"`
	SinkDir        string `json:"sinkDir"`
}

// Env is a running development environment.
type Env struct {
	Info Info
	// Config and Client reach the API server as an admin; Client reads uncached.
	Config *rest.Config
	Client client.Client
	// Kubectl is the kubectl built beside kube-apiserver.
	Kubectl string
	Issuer  *Issuer
	Sink    *testkit.Server // the customers' stand-in mail server; it saves each mail in Info.SinkDir
	DNS     *testkit.DNS    // the relay's only resolver: NXDOMAIN for names not added
	Relay   *relay.Relay

	cp      *controlPlane
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan error
	logFile *os.File
	stopped sync.Once
}

// Start brings everything up and returns once the samples' credential works (or, with
// NoSamples, once the relay serves its certificate). Stop ends it.
func Start(ctx context.Context, opts Options) (env *Env, err error) {
	opts = opts.withDefaults()
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, err
	}
	// A fresh control plane each run: the old spool and mail would only confuse.
	for _, sub := range []string{"spool", "sink"} {
		if err := os.RemoveAll(filepath.Join(opts.Dir, sub)); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", opts.Dir, err)
	}
	e := &Env{failed: make(chan error, 2)}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	if opts.Logger == nil {
		if e.logFile, err = os.Create(filepath.Join(opts.Dir, "postwarden.log")); err != nil {
			return nil, err
		}
		// JSON, as the relay logs by default, so the tracking queries of
		// docs/operating.md work on it as they are.
		opts.Logger = slog.New(slog.NewJSONHandler(e.logFile, nil))
	}
	// The operator and client-go log through the same handler as the relay.
	ctrl.SetLogger(logr.FromSlogHandler(opts.Logger.Handler()))
	klog.SetSlogLogger(opts.Logger.With("component", "client-go"))
	if e.DNS, err = testkit.NewDNSServer("127.0.0.1:0"); err != nil {
		return nil, err
	}
	if e.Sink, err = startSink(opts.SinkAddr, filepath.Join(opts.Dir, "sink"), opts.Out); err != nil {
		return nil, err
	}
	if e.cp, err = startControlPlane(root, opts.Dir, opts.Out); err != nil {
		return nil, err
	}
	e.Config, e.Kubectl = e.cp.config, e.cp.kubectl
	if e.Client, err = client.New(e.Config, client.Options{Scheme: controllers.Scheme}); err != nil {
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	for _, ns := range []string{OperatorNamespace, opts.SamplesNamespace} {
		if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	if e.Issuer, err = NewIssuer(opts.Dir, e.Client); err != nil {
		return nil, err
	}

	// Bind the relay's listeners first: the operator writes the submission port into
	// credential Secrets, and ":0" is only known once bound.
	runCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	if err := e.startRelay(runCtx, opts); err != nil {
		return nil, err
	}
	if err := e.startOperator(runCtx, opts); err != nil {
		return nil, err
	}
	e.Info = Info{
		Submission: e.Relay.SubmissionAddr().String(),
		Inbound:    e.Relay.InboundAddr().String(),
		CAFile:     e.Issuer.CAFile,
		Kubeconfig: e.cp.kubeconfig,
		SinkDir:    filepath.Join(opts.Dir, "sink"),
	}
	fmt.Fprintln(opts.Out, "dev: operator and relay running; waiting for the relay certificate")
	if err := e.waitRelayCertificate(ctx); err != nil {
		return nil, err
	}
	if opts.NoSamples {
		return e, nil
	}
	sinkHost, sinkPort, err := splitHostPort(e.Sink.Addr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Out, "dev: applying config/samples to namespace %s (inbound delivery to the sink at %s)\n", opts.SamplesNamespace, e.Sink.Addr)
	facts, err := applySamples(ctx, e.Client, root, opts.SamplesNamespace, sinkHost, sinkPort)
	if err != nil {
		return nil, err
	}
	e.Info.Sender, e.Info.LocalRecipient = facts.sender, facts.localRecipient
	fmt.Fprintf(opts.Out, "dev: publishing the sample domain's DKIM, SPF and DMARC records in the loopback DNS, as its admin would\n")
	if err := e.PublishDNSRecords(ctx, opts.SamplesNamespace, facts.mailDomain); err != nil {
		return nil, err
	}
	if e.Info.Username, e.Info.Password, err = e.WaitCredential(ctx, opts.SamplesNamespace, facts.credentialSecret); err != nil {
		return nil, err
	}
	if err := e.WaitLogin(ctx, e.Info.Username, e.Info.Password, true); err != nil {
		return nil, err
	}
	return e, nil
}

// dnsCheckInterval is how often the dev operator looks DNS records up again.
const dnsCheckInterval = 3 * time.Second

// PublishDNSRecords plays the domain admin: it publishes in the loopback DNS server the
// records the MailDomain's status asks for (every DKIM selector's, SPF and DMARC), and
// waits until the operator has seen them and the relay enforces the config that signs
// with them (a new configHash, Ready), so that the next mail of the domain is signed.
func (e *Env) PublishDNSRecords(ctx context.Context, namespace, name string) error {
	var md relayv1alpha1.MailDomain
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := Poll(ctx, time.Minute, func() error {
		if err := e.Client.Get(ctx, key, &md); err != nil {
			return err
		}
		d := md.Status.DKIM
		if md.Spec.DKIM == nil {
			return nil
		}
		if d == nil || len(d.Selectors) != len(md.Spec.DKIM.Selectors) {
			return errors.New("status.dkim does not show every selector's record yet")
		}
		if md.Status.ConfigHash == "" {
			return errors.New("the domain is not in the relay config yet")
		}
		for _, s := range d.Selectors {
			if s.Record == "" {
				return fmt.Errorf("selector %s has no key yet", s.Name)
			}
		}
		return nil
	})
	if err != nil || md.Spec.DKIM == nil {
		return err
	}
	d := md.Status.DKIM
	before := md.Status.ConfigHash
	var records []string
	for _, s := range d.Selectors {
		records = append(records, testkit.TXTRecord(s.RecordName, s.Record))
	}
	if d.SPF != nil {
		records = append(records, testkit.TXTRecord(d.SPF.RecordName, "v=spf1 "+d.SPF.Expected+" -all"))
	}
	if d.DMARC != nil {
		records = append(records, testkit.TXTRecord(d.DMARC.RecordName, d.DMARC.Expected))
	}
	if err := e.DNS.AddRecords(records...); err != nil {
		return err
	}
	err = Poll(ctx, time.Minute, func() error {
		if err := e.Client.Get(ctx, key, &md); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(md.Status.Conditions, relayv1alpha1.ConditionDKIMPublished) {
			return errors.New("the operator has not seen the DKIM records yet")
		}
		if md.Status.ConfigHash == before || !meta.IsStatusConditionTrue(md.Status.Conditions, relayv1alpha1.ConditionReady) {
			return errors.New("the relay does not enforce the config that signs yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publishing the DNS records of %s: %w", key, err)
	}
	return nil
}

func (e *Env) startRelay(ctx context.Context, opts Options) error {
	kube, err := kubernetes.NewForConfig(rest.CopyConfig(e.Config))
	if err != nil {
		return fmt.Errorf("creating a kubernetes client: %w", err)
	}
	dc := &relay.DeliveryConfig{DNSServers: []string{e.DNS.Addr}, MXPort: opts.MXPort}
	if !opts.NoSmarthost {
		dc.Smarthost = e.Sink.Addr
	}
	r, err := relay.New(relay.Config{
		Hostname:       RelayHostname,
		Submission:     relay.Listener{Addr: opts.SubmissionAddr},
		Inbound:        relay.Listener{Addr: opts.InboundAddr},
		KubeConfigName: ConfigName,
		Namespace:      OperatorNamespace,
		Kube:           kube,
		PodName:        RelayPodName,
		SpoolDir:       filepath.Join(opts.Dir, "spool"),
		AdminSocket:    relay.DefaultAdminSocket(filepath.Join(opts.Dir, "spool")),
		Delivery:       dc,
		HTTPAddr:       opts.HTTPAddr,
		GracePeriod:    2 * time.Second,
		Discovery:      relay.DiscoveryConfig{ShipInterval: opts.DiscoveryPublishInterval},
		// The samples deliver to the sink on loopback, which the relay refuses unless allowed.
		OutboundAllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		Logger:                  opts.Logger,
	})
	if err != nil {
		return fmt.Errorf("starting the relay: %w", err)
	}
	e.Relay = r
	e.wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			e.failed <- fmt.Errorf("relay: %w", err)
		}
	})
	return nil
}

func (e *Env) startOperator(ctx context.Context, devOpts Options) error {
	_, port, err := splitHostPort(e.Relay.SubmissionAddr().String())
	if err != nil {
		return err
	}
	opts := controllers.OperatorOptions{
		MetricsAddr:     "0",
		ProbeAddr:       "0",
		Namespace:       OperatorNamespace,
		ConfigName:      ConfigName,
		SubmissionHost:  "127.0.0.1",
		SubmissionPort:  port,
		RelayHostnames:  []string{RelayHostname},
		IssuerName:      IssuerName,
		IssuerKind:      "ClusterIssuer",
		IssuerGroup:     "cert-manager.io",
		CertificateName: CertificateName,
		// Discovery reports go through the dev relay's submission port, verified with the
		// stand-in issuer's CA (the certificate Secret's ca.crt) for RelayHostname.
		ReportRelay:            e.Relay.SubmissionAddr().String(),
		DiscoveryMergeInterval: devOpts.DiscoveryMergeInterval,
		// DKIM, SPF and DMARC records are looked up in the loopback DNS server, where
		// publishing is instant: look again every few seconds, not every two minutes.
		DNSServers:       []string{e.DNS.Addr},
		DNSCheckInterval: dnsCheckInterval,
	}
	mgr, err := controllers.NewManager(e.Config, opts)
	if err != nil {
		return err
	}
	if err := controllers.SetupWithManager(mgr, opts); err != nil {
		return err
	}
	if err := e.Issuer.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the dev issuer: %w", err)
	}
	e.wg.Go(func() {
		if err := mgr.Start(ctx); err != nil {
			e.failed <- fmt.Errorf("operator: %w", err)
		}
	})
	return nil
}

// Failed reports a part that stopped on its own.
func (e *Env) Failed() <-chan error { return e.failed }

// Stop ends every part and waits for them.
func (e *Env) Stop() error {
	var err error
	e.stopped.Do(func() {
		if e.cancel != nil {
			e.cancel()
		}
		e.wg.Wait()
		if e.cp != nil {
			err = errors.Join(err, e.cp.stop())
		}
		if e.Sink != nil {
			err = errors.Join(err, e.Sink.Close())
		}
		if e.DNS != nil {
			err = errors.Join(err, e.DNS.Close())
		}
		if e.logFile != nil {
			err = errors.Join(err, e.logFile.Close())
		}
	})
	return err
}

// TLSConfig verifies the relay against the dev CA.
func (e *Env) TLSConfig() *tls.Config {
	return &tls.Config{ServerName: RelayHostname, RootCAs: e.Issuer.Pool(), MinVersion: tls.VersionTLS12}
}

func splitHostPort(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	return host, port, err
}
