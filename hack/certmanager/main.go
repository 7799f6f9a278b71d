// Command certmanager runs the real cert-manager certificate controllers
// (github.com/cert-manager/cert-manager, the version pinned in go.mod) for
// postwarden's test clusters.
//
// Why this exists: cert-manager's own controller binary lives in the nested
// module github.com/cert-manager/cert-manager/cmd/controller, which the Go
// module proxy does not serve, so it cannot be built from the proxy. All of
// the controller logic, however, lives in the main module, which the proxy
// does serve. This program is a thin replacement for cmd/controller: it
// builds cert-manager's controller ContextFactory and starts the very same
// library controllers (registered through pkg/controller.Register) that the
// upstream binary starts. Only the CA and SelfSigned issuer types are wired
// in; ACME, Vault and Venafi, the ingress/gateway shims, the CSR controllers
// and the cert-manager webhook/cainjector are not part of this binary.
//
// It is a separate module so that the parent module's go vet/go test ./...
// and its dependency graph are unaffected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	utilfeature "github.com/cert-manager/cert-manager/pkg/util/feature"

	// Issuer implementations used by the issuers/clusterissuers controllers.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// defaultControllers are the cert-manager controllers started unless
// --controllers says otherwise. The names are the ones cert-manager registers
// them under.
var defaultControllers = []string{
	issuers.ControllerName,         // issuers
	clusterissuers.ControllerName,  // clusterissuers
	crapprover.ControllerName,      // certificaterequests-approver
	crca.CRControllerName,          // certificaterequests-issuer-ca
	crselfsigned.CRControllerName,  // certificaterequests-issuer-selfsigned
	trigger.ControllerName,         // certificates-trigger
	issuing.ControllerName,         // certificates-issuing
	keymanager.ControllerName,      // certificates-key-manager
	requestmanager.ControllerName,  // certificates-request-manager
	readiness.ControllerName,       // certificates-readiness
	revisionmanager.ControllerName, // certificates-revision-manager
}

// options configures run. The zero value is not useful; start from
// defaultOptions.
type options struct {
	Kubeconfig               string // empty: in-cluster config
	Namespace                string // empty: all namespaces
	ClusterResourceNamespace string

	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration

	HealthListen  string // empty: no health server
	MetricsListen string // empty: no metrics server

	Controllers []string
	Workers     int

	KubeAPIQPS   float32
	KubeAPIBurst int

	EnableCertificateOwnerRef    bool
	CopiedAnnotationPrefixes     []string
	CertificateRequestMinBackoff time.Duration
	CertificateRequestMaxBackoff time.Duration
	FeatureGates                 string
}

// defaultOptions mirrors cert-manager's controller defaults where they apply.
func defaultOptions() options {
	return options{
		ClusterResourceNamespace:     "cert-manager",
		LeaderElectionNamespace:      "kube-system",
		LeaderElectionID:             "cert-manager-controller",
		LeaseDuration:                60 * time.Second,
		RenewDeadline:                40 * time.Second,
		RetryPeriod:                  15 * time.Second,
		HealthListen:                 ":9403",
		MetricsListen:                "",
		Controllers:                  slices.Clone(defaultControllers),
		Workers:                      5,
		KubeAPIQPS:                   20,
		KubeAPIBurst:                 50,
		CopiedAnnotationPrefixes:     []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
		CertificateRequestMinBackoff: time.Hour,
		CertificateRequestMaxBackoff: 32 * time.Hour,
	}
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// A second signal kills the process the default way.
		<-ctx.Done()
		stop()
	}()

	err = run(ctx, o)
	klog.Flush()
	if err != nil {
		logf.Log.Error(err, "cert-manager controller exited with error")
		klog.Flush()
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("certmanager", flag.ContinueOnError)

	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "path to a kubeconfig; empty means in-cluster configuration")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "only watch this namespace (empty: all namespaces; disables clusterissuers)")
	fs.StringVar(&o.ClusterResourceNamespace, "cluster-resource-namespace", o.ClusterResourceNamespace, "namespace holding the Secrets referenced by ClusterIssuers")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "run leader election (Lease) before starting the controllers")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "namespace of the leader election Lease")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "name of the leader election Lease")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration, "leader election lease duration")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline, "leader election renew deadline")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "leader election retry period")
	fs.StringVar(&o.HealthListen, "health-listen", o.HealthListen, "address for /healthz, /livez and /readyz (empty: disabled)")
	fs.StringVar(&o.MetricsListen, "metrics-listen", o.MetricsListen, "address for cert-manager's Prometheus /metrics (empty: disabled)")
	fs.Func("controllers", "comma-separated controllers to run (default "+strings.Join(defaultControllers, ",")+")", func(s string) error {
		o.Controllers = nil
		for n := range strings.SplitSeq(s, ",") {
			if n = strings.TrimSpace(n); n != "" {
				o.Controllers = append(o.Controllers, n)
			}
		}
		return nil
	})
	fs.IntVar(&o.Workers, "workers", o.Workers, "workers per controller")
	fs.Func("kube-api-qps", "client QPS when API Priority and Fairness is off (default 20)", func(s string) error {
		var q float64
		if _, err := fmt.Sscan(s, &q); err != nil {
			return err
		}
		o.KubeAPIQPS = float32(q)
		return nil
	})
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "client burst when API Priority and Fairness is off")
	fs.BoolVar(&o.EnableCertificateOwnerRef, "enable-certificate-owner-ref", o.EnableCertificateOwnerRef, "make Certificates owners of their Secrets (Secrets are deleted with the Certificate)")
	fs.DurationVar(&o.CertificateRequestMinBackoff, "certificate-request-minimum-backoff-duration", o.CertificateRequestMinBackoff, "initial re-issuance backoff after a failed CertificateRequest")
	fs.DurationVar(&o.CertificateRequestMaxBackoff, "certificate-request-maximum-backoff-duration", o.CertificateRequestMaxBackoff, "maximum re-issuance backoff after failed CertificateRequests")
	fs.StringVar(&o.FeatureGates, "feature-gates", o.FeatureGates, "cert-manager controller feature gates, e.g. ServerSideApply=true")

	// klog flags, most importantly --v (cert-manager logs at info level 2).
	klog.InitFlags(fs)
	if err := fs.Set("v", "2"); err != nil {
		return o, err
	}

	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return o, nil
}

// run starts the configured cert-manager controllers and blocks until ctx is
// cancelled (nil error) or something fails.
func run(ctx context.Context, o options) error {
	log := logf.Log.WithName("controller")
	ctx = logf.NewContext(ctx, log)

	if o.FeatureGates != "" {
		if err := utilfeature.DefaultMutableFeatureGate.Set(o.FeatureGates); err != nil {
			return fmt.Errorf("--feature-gates: %w", err)
		}
	}
	if o.Workers < 1 {
		return fmt.Errorf("--workers must be at least 1, got %d", o.Workers)
	}

	names, err := selectControllers(o)
	if err != nil {
		return err
	}
	log.Info("enabled controllers", "controllers", names)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)

	factory, err := controller.NewContextFactory(gctx, controller.ContextOptions{
		Kubeconfig:         o.Kubeconfig,
		KubernetesAPIQPS:   o.KubeAPIQPS,
		KubernetesAPIBurst: o.KubeAPIBurst,
		Namespace:          o.Namespace,
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace: o.ClusterResourceNamespace,
			// Ambient credentials only matter for ACME/Vault issuers, which
			// are not built in.
		},
		// ACME is not wired in; its options stay zero.
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           o.EnableCertificateOwnerRef,
			CopiedAnnotationPrefixes:                 o.CopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: o.CertificateRequestMinBackoff,
			CertificateRequestMaximumBackoffDuration: o.CertificateRequestMaxBackoff,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: 60},
	})
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}
	// The base context shares the informer factories with every controller
	// context the factory builds.
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building controller context: %w", err)
	}

	// abort stops everything started so far and reports err.
	abort := func(err error) error {
		cancel()
		return errors.Join(err, shutdown(g, base))
	}

	var ready atomic.Bool
	leaderHealth := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)

	if o.HealthListen != "" {
		if err := serveHealth(gctx, g, o.HealthListen, leaderHealth, &ready); err != nil {
			return abort(err)
		}
	}

	if o.MetricsListen != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(gctx, "tcp", o.MetricsListen)
		if err != nil {
			return abort(fmt.Errorf("metrics listener: %w", err))
		}
		certs := base.SharedInformerFactory.Certmanager().V1()
		base.Metrics.SetupCertificateCollector(certs.Certificates().Lister())
		base.Metrics.SetupIssuerCollector(certs.Issuers().Lister())
		if slices.Contains(names, clusterissuers.ControllerName) {
			base.Metrics.SetupClusterIssuerCollector(certs.ClusterIssuers().Lister())
		}
		srv := base.Metrics.NewServer(ln)
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics server: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			return srv.Shutdown(sctx) //nolint:contextcheck // gctx is already done
		})
	}

	elected := make(chan struct{})
	if o.LeaderElect {
		le, err := newLeaderElector(factory, o, leaderHealth, elected)
		if err != nil {
			return abort(err)
		}
		g.Go(func() error {
			log.Info("waiting for leadership", "lease", o.LeaderElectionNamespace+"/"+o.LeaderElectionID)
			le.Run(gctx)
			if gctx.Err() == nil {
				return errors.New("leader election lost")
			}
			return nil
		})
	} else {
		close(elected)
	}

	select {
	case <-gctx.Done():
		return shutdown(g, base)
	case <-elected:
	}

	known := controller.Known()
	for _, name := range names {
		iface, err := known[name](factory)
		if err != nil {
			return abort(fmt.Errorf("constructing controller %s: %w", name, err))
		}
		g.Go(func() error {
			log.Info("starting controller", "controller", name)
			err := iface.Run(o.Workers, gctx)
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("controller %s: %w", name, err)
			}
			return nil
		})
	}

	// Controllers register their informers while being constructed, so the
	// factories are started only now.
	base.SharedInformerFactory.Start(gctx.Done())
	base.KubeSharedInformerFactory.Start(gctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())
	g.Go(func() error {
		var unsynced []string
		for t, ok := range base.SharedInformerFactory.WaitForCacheSync(gctx.Done()) {
			if !ok {
				unsynced = append(unsynced, t.String())
			}
		}
		for t, ok := range base.KubeSharedInformerFactory.WaitForCacheSync(gctx.Done()) {
			if !ok {
				unsynced = append(unsynced, t)
			}
		}
		if gctx.Err() != nil {
			return nil
		}
		if len(unsynced) > 0 {
			return fmt.Errorf("informer caches did not sync: %v", unsynced)
		}
		ready.Store(true)
		log.Info("informer caches synced; ready")
		return nil
	})

	return shutdown(g, base)
}

// shutdown waits for every goroutine in g and then stops the informers.
func shutdown(g *errgroup.Group, base *controller.Context) error {
	err := g.Wait()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	logf.Log.WithName("controller").Info("control loops exited")
	return err
}

// selectControllers validates o.Controllers against the registered
// cert-manager controllers.
func selectControllers(o options) ([]string, error) {
	known := controller.Known()
	var names []string
	for _, n := range o.Controllers {
		if _, ok := known[n]; !ok {
			all := make([]string, 0, len(known))
			for k := range known {
				all = append(all, k)
			}
			sort.Strings(all)
			return nil, fmt.Errorf("unknown controller %q (built in: %s)", n, strings.Join(all, ", "))
		}
		if o.Namespace != "" && n == clusterissuers.ControllerName {
			continue // cluster-scoped; meaningless when scoped to one namespace
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no controllers enabled")
	}
	return names, nil
}

func newLeaderElector(factory *controller.ContextFactory, o options, health *leaderelection.HealthzAdaptor, elected chan struct{}) (*leaderelection.LeaderElector, error) {
	lctx, err := factory.Build("leader-election")
	if err != nil {
		return nil, fmt.Errorf("building leader election context: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("leader election identity: %w", err)
	}
	lock, err := resourcelock.NewWithLabels(resourcelock.LeasesResourceLock,
		o.LeaderElectionNamespace, o.LeaderElectionID,
		lctx.Client.CoreV1(), lctx.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{
			Identity:      host + "_" + string(uuid.NewUUID()),
			EventRecorder: lctx.Recorder,
		},
		map[string]string{"app.kubernetes.io/managed-by": "cert-manager"},
	)
	if err != nil {
		return nil, fmt.Errorf("leader election lock: %w", err)
	}
	return leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        health,
		Name:            o.LeaderElectionID,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() {},
		},
	})
}

// serveHealth serves /healthz and /livez (process alive and, with leader
// election, lease renewals not overdue) and /readyz (this replica leads and
// its informer caches are synced).
func serveHealth(ctx context.Context, g *errgroup.Group, addr string, leader *leaderelection.HealthzAdaptor, ready *atomic.Bool) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	live := func(w http.ResponseWriter, r *http.Request) {
		if err := leader.Check(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", live)
	mux.HandleFunc("/livez", live)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("health server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		return srv.Shutdown(sctx) //nolint:contextcheck // ctx is already done
	})
	return nil
}
