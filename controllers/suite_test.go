package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	testingclock "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testenv"
	"github.com/postwarden/postwarden/test/testkit"
)

const (
	operatorNS    = "postwarden-system"
	relayHostname = "relay.test.example"
	configName    = "postwarden-relay-config"
)

var (
	env *testenv.Env
	k8s client.Client
	// logs collects everything the operator logs, for the password scan.
	logs testenv.SyncBuffer

	operatorMu   sync.Mutex
	stopOperator func()

	// discoveryClock is SMTP Discovery's time in the running operator; tests move it.
	discoveryClock = testingclock.NewFakePassiveClock(time.Now())
	// sink receives the discovery reports the operator mails.
	sink *reportSink
	// dnsServer answers the operator's DKIM, SPF and DMARC lookups.
	dnsServer *testkit.DNS
)

func operatorOptions() controllers.OperatorOptions {
	return controllers.ForTests(controllers.OperatorOptions{
		MetricsAddr: "0", ProbeAddr: "0", Namespace: operatorNS, ConfigName: configName,
		RelayHostnames: []string{relayHostname}, SubmissionPort: 587,
		IssuerName: "test-issuer", IssuerKind: "ClusterIssuer", IssuerGroup: "cert-manager.io",
		DiscoveryMergeInterval: 100 * time.Millisecond, Clock: discoveryClock, ReportRelay: sink.Addr,
		DNSServers: []string{dnsServer.Addr},
	}, 1024)
}

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(&logs), zap.UseDevMode(true)))
	var err error
	if sink, err = startReportSink(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if dnsServer, err = testkit.NewDNSServer("127.0.0.1:0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = env.Client
	code := func() int {
		ctx := context.Background()
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := grantOperatorRole(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := startOperator(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer stopRunningOperator()
		code := m.Run()
		if os.Getenv("POSTWARDEN_TEST_LOGS") != "" {
			fmt.Fprint(os.Stderr, logs.String())
		}
		return code
	}()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// operatorAccount is the identity the operator runs as in tests: a service account
// holding only the generated config/rbac/role.yaml, so every test also checks that the
// RBAC markers grant enough.
const operatorAccount = "postwarden-operator"

// operatorConfig impersonates the operator's service account.
func operatorConfig() *rest.Config {
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + operatorNS + ":" + operatorAccount}
	return cfg
}

// grantOperatorRole installs the generated roles and binds them to operatorAccount.
func grantOperatorRole(ctx context.Context) error {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		return err
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: operatorAccount, Namespace: operatorNS}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		if strings.TrimSpace(strings.Trim(doc, "-\n")) == "" {
			continue
		}
		var head metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return err
		}
		switch head.Kind {
		case "ClusterRole":
			var role rbacv1.ClusterRole
			if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
				return err
			}
			binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: []rbacv1.Subject{subject},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}}
			if err := errors.Join(k8s.Create(ctx, &role), k8s.Create(ctx, binding)); err != nil {
				return err
			}
		case "Role":
			var role rbacv1.Role
			if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
				return err
			}
			binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: role.Namespace, Name: role.Name}, Subjects: []rbacv1.Subject{subject},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name}}
			if err := errors.Join(k8s.Create(ctx, &role), k8s.Create(ctx, binding)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected %s in role.yaml", head.Kind)
		}
	}
	return nil
}

// startOperator runs the operator in the background against the test control plane.
func startOperator() error {
	operatorMu.Lock()
	defer operatorMu.Unlock()
	mgr, err := controllers.NewManager(operatorConfig(), operatorOptions())
	if err != nil {
		return err
	}
	if err := controllers.SetupWithManager(mgr, operatorOptions()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopOperator = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "operator stopped with error:", err)
		}
	}
	return nil
}

func stopRunningOperator() {
	operatorMu.Lock()
	defer operatorMu.Unlock()
	if stopOperator != nil {
		stopOperator()
		stopOperator = nil
	}
}

// eventually polls check until it returns nil or the deadline passes.
func eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, what, check)
}

// newNamespace creates a namespace for one test.
func newNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func create(t testing.TB, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func get(t testing.TB, obj client.Object) error {
	t.Helper()
	return k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
}

// update applies change to the live object and writes it, retrying on conflicts.
func update[T client.Object](t *testing.T, obj T, change func(T)) {
	t.Helper()
	eventually(t, "updating "+obj.GetName(), func() error {
		if err := get(t, obj); err != nil {
			return err
		}
		change(obj)
		return k8s.Update(context.Background(), obj)
	})
}

// condition returns a condition as "Status/Reason", or "" when absent.
func condition(conds []metav1.Condition, typ string) string {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

func wantCondition(conds []metav1.Condition, typ, want string) error {
	if got := condition(conds, typ); got != want {
		c := meta.FindStatusCondition(conds, typ)
		msg := ""
		if c != nil {
			msg = c.Message
		}
		return fmt.Errorf("%s is %q (%s), want %q", typ, got, msg, want)
	}
	return nil
}

// currentSnapshot reads and assembles the relay config the operator wrote, as a relay
// would: all shards of one hash, or an error.
func currentSnapshot() (*snapshot.Snapshot, error) {
	var list corev1.SecretList
	if err := k8s.List(context.Background(), &list, client.InNamespace(operatorNS),
		client.MatchingLabels{snapshot.LabelConfig: configName}); err != nil {
		return nil, err
	}
	if len(list.Items) == 0 {
		return nil, errors.New("no config shards")
	}
	var shards []snapshot.Shard
	for _, s := range list.Items {
		sh, err := snapshot.ShardFromAnnotations(s.Annotations, s.Data[snapshot.DataKey])
		if err != nil {
			return nil, err
		}
		shards = append(shards, sh)
	}
	return snapshot.Assemble(shards)
}

// snapshotWhere polls until the written config satisfies check.
func snapshotWhere(t testing.TB, what string, check func(*snapshot.Snapshot) error) *snapshot.Snapshot {
	t.Helper()
	var snap *snapshot.Snapshot
	eventually(t, what, func() error {
		s, err := currentSnapshot()
		if err != nil {
			return err
		}
		if err := check(s); err != nil {
			return err
		}
		snap = s
		return nil
	})
	return snap
}

func findDomain(s *snapshot.Snapshot, name string) *snapshot.Domain {
	for i := range s.Domains {
		if s.Domains[i].Name == name {
			return &s.Domains[i]
		}
	}
	return nil
}

func findCredential(s *snapshot.Snapshot, ns, name string) *snapshot.Credential {
	for i := range s.Credentials {
		if c := &s.Credentials[i]; c.Source.Namespace == ns && c.Source.Name == name {
			return c
		}
	}
	return nil
}

// Builders.

func mailDomain(ns, name, domain string, users ...string) *relayv1alpha1.MailDomain {
	md := &relayv1alpha1.MailDomain{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: relayv1alpha1.MailDomainSpec{Domain: domain}}
	for _, u := range users {
		md.Spec.Users = append(md.Spec.Users, relayv1alpha1.MailUser{Address: u})
	}
	return md
}

func smtpCredential(ns, name, domainRef, label string) *relayv1alpha1.SMTPCredential {
	return &relayv1alpha1.SMTPCredential{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: relayv1alpha1.SMTPCredentialSpec{MailDomainRef: relayv1alpha1.MailDomainReference{Name: domainRef}, Label: label}}
}

func secretOf(t *testing.T, cred *relayv1alpha1.SMTPCredential) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	eventually(t, "credential Secret exists", func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Namespace: cred.Namespace, Name: cred.Name + "-smtp"}, &s)
	})
	return &s
}

func objectMeta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name}
}

func namespaceObject(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
