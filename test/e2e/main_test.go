package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/postwarden/postwarden/test/dev"
	"github.com/postwarden/postwarden/test/testkit"
)

// The world the relay delivers to: two MX hosts on one port, on two loopback addresses,
// with certificates from mxCA; the one for wrong.test names another host.
var (
	env            *dev.Env
	mxGood, mxBad  *testkit.Server
	mxCAPEM        []byte
	kubectlTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	// Without KUBEBUILDER_ASSETS, dev.Start builds the control plane (cached) itself.
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "postwarden-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)

	ca, err := testkit.GenerateCA(testkit.CommonName("e2e MX CA"))
	if err != nil {
		return 0, err
	}
	mxCAPEM = []byte(ca.PEM())
	goodCert, err := ca.Issue(testkit.Names("mx.good.test"))
	if err != nil {
		return 0, err
	}
	badCert, err := ca.Issue(testkit.Names("mx.somebody-else.test"))
	if err != nil {
		return 0, err
	}
	if mxGood, err = testkit.NewServer("127.0.0.2:0", testkit.WithCertificate(goodCert)); err != nil {
		return 0, err
	}
	defer mxGood.Close()
	if mxBad, err = testkit.NewServer(fmt.Sprintf("127.0.0.3:%d", mxGood.Port), testkit.WithCertificate(badCert)); err != nil {
		return 0, err
	}
	defer mxBad.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	env, err = dev.Start(ctx, dev.Options{
		Dir:            dir,
		SubmissionAddr: "127.0.0.1:0",
		InboundAddr:    "127.0.0.1:0",
		SinkAddr:       "127.0.0.1:0",
		HTTPAddr:       "127.0.0.1:0",
		NoSamples:      true,
		NoSmarthost:    true,
		MXPort:         mxGood.Port,
		Out:            os.Stderr,
		// Short, so that step 7 sees discovery reach the policy's status quickly.
		DiscoveryPublishInterval: 200 * time.Millisecond,
		DiscoveryMergeInterval:   300 * time.Millisecond,
	})
	if err != nil {
		return 0, fmt.Errorf("starting the system: %w", err)
	}
	defer env.Stop()
	// The domains' own server (the sink) has no mailbox nobody@: discovery callouts hear
	// 550. Nor has it the relay's catch-all probe (postwarden-probe-…@), which a server
	// that is not a catch-all refuses.
	env.Sink.RejectRcptIf(func(rcpt string) bool {
		return strings.HasPrefix(rcpt, "nobody@") || strings.HasPrefix(rcpt, "postwarden-probe-")
	}, testkit.Reply(550, "5.1.1", "No such mailbox here"))
	fmt.Printf("e2e: control plane, operator and relay up in %v\n", time.Since(start).Round(time.Millisecond))
	if err := env.DNS.AddRecords(
		"good.test. 60 IN MX 10 mx.good.test.",
		"mx.good.test. 60 IN A 127.0.0.2",
		"wrong.test. 60 IN MX 10 mx.wrong.test.",
		"mx.wrong.test. 60 IN A 127.0.0.3",
	); err != nil {
		return 0, err
	}
	return m.Run(), nil
}

// kubectl runs the kubectl built beside kube-apiserver against the system.
func kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.Kubectl, append([]string{"--kubeconfig", env.Info.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
