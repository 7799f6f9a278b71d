package controllers

import (
	"context"
	"flag"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// Scheme holds every API type the operator reads or writes.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(relayv1alpha1.AddToScheme(Scheme))
}

// OperatorOptions are the operator's command-line settings.
type OperatorOptions struct {
	MetricsAddr    string
	ProbeAddr      string
	LeaderElection bool
	// Namespace is where the operator writes relay config and finds relay replicas.
	Namespace string
}

// BindFlags registers the options on fs.
func (o *OperatorOptions) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	fs.BoolVar(&o.LeaderElection, "leader-elect", false, "elect a leader, so that only one of several replicas reconciles")
	fs.StringVar(&o.Namespace, "namespace", "postwarden-system", "namespace of the relays and their config Secrets")
}

// RunOperator is the `postwarden operator` command.
func RunOperator(ctx context.Context, args []string) error {
	var opts OperatorOptions
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	opts.BindFlags(fs)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress: opts.ProbeAddr,
		LeaderElection:         opts.LeaderElection,
		LeaderElectionID:       "operator.relay.postwarden.dev",
		// The operator is stopped only by its context; release the lease at once so a
		// standby takes over without waiting for it to expire.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := SetupWithManager(mgr, opts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}
	ctrl.Log.WithName("operator").Info("starting", "namespace", opts.Namespace, "leaderElection", opts.LeaderElection)
	return mgr.Start(ctx)
}

// SetupWithManager registers every reconciler of the operator with mgr.
func SetupWithManager(mgr ctrl.Manager, opts OperatorOptions) error {
	return nil
}
