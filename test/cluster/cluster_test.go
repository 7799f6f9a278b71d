//go:build cluster

package cluster

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/test/testenv"
)

var (
	relaySTS    = release + "-postwarden-relay"
	operatorDep = release + "-postwarden-operator"
)

// TestChartOnARealCluster installs the chart as a user would and sends real mail through
// it; then, under a steady load from outside the cluster, it restarts, scales, kills and
// fails over the pods and counts what was acknowledged, delivered, lost and duplicated.
func TestChartOnARealCluster(t *testing.T) {
	ca := newTestCA(t)
	makeSpoolVolumes(t, 4)
	installCertManager(t, ca)
	installSink(t, newCA(t, "postwarden cluster test delivery events CA", "events-ca.crt"))

	installed := time.Now()
	helmInstall(t, chartValues())
	kube(t, "", "create", "namespace", "mail")
	kube(t, "", "apply", "--server-side", "-n", "mail", "-f", filepath.Join(testenv.RepoRoot(), "config", "samples"))
	// The sample domain's own server is a name this cluster cannot resolve: the admin
	// points it at the sink.
	kube(t, "", "patch", "maildomain", "-n", "mail", "example-com", "--type=merge",
		"-p", fmt.Sprintf(`{"spec":{"inboundDelivery":{"host":%q,"port":25}}}`, sinkIP))
	// The load below sends thousands of messages with the sample credential: lift its
	// sending limits, as an admin would for a high-volume application.
	kube(t, "", "patch", "smtpcredential", "-n", "mail", "billing-app", "--type=merge",
		"-p", `{"spec":{"limits":{"messagesPerWindow":-1,"messagesPerDay":-1,"recipientsPerDay":-1}}}`)

	sub := submitter{
		addr:  nodePort(t, namespace, relaySTS, "submission"),
		roots: ca.pool,
		login: waitLogin(t, "billing-app-smtp", "billing@example.com"),
	}
	eventually(t, 3*time.Minute, "the first mail is accepted through the relay Service", func() error {
		c, err := sub.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		return send(c, sub.login.sender, "someone@example.org", "first@cluster.test")
	})
	firstMail := time.Since(installed)
	waitDelivered(t, "first@cluster.test")

	t.Run("mail from the relay is DKIM-signed and verifies", func(t *testing.T) { dkimEndToEnd(t, sub) })

	t.Run("swaks sends through the Service with STARTTLS verified", func(t *testing.T) {
		host, port := splitAddr(sub.addr)
		out, err := exec.Command("swaks", "--server", host, "--port", port, "--tls", "--tls-verify",
			"--tls-ca-path", ca.file, "--tls-sni", relayName,
			"--auth", "PLAIN", "--auth-user", sub.login.username, "--auth-password", sub.login.password, "--auth-hide-password",
			"--from", sub.login.sender, "--to", "someone@example.org",
			"--header", "Message-Id: <swaks@cluster.test>").CombinedOutput() // replaces swaks' own, spelt so
		if err != nil {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		waitDelivered(t, "swaks@cluster.test")
	})

	t.Run("smtplib sends through the Service with STARTTLS verified", func(t *testing.T) {
		host, port := splitAddr(sub.addr)
		script := `import smtplib, ssl, sys
host, port, name, ca, user, password, sender = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
s = smtplib.SMTP(host, int(port), timeout=30)
s._host = name  # verify the certificate for the relay's name, not the node address
s.starttls(context=ctx)
s.login(user, password)
s.sendmail(sender, ["someone@example.org"], "From: <%s>\r\nTo: <someone@example.org>\r\nSubject: smtplib\r\nMessage-ID: <smtplib@cluster.test>\r\n\r\nhello\r\n" % sender)
s.quit()
`
		out, err := exec.Command("python3", "-c", script, host, port, relayName, ca.file,
			sub.login.username, sub.login.password, sub.login.sender).CombinedOutput()
		if err != nil {
			t.Fatalf("smtplib: %v\n%s", err, out)
		}
		waitDelivered(t, "smtplib@cluster.test")
	})

	t.Run("port 25 accepts for the managed domain and refuses to relay", func(t *testing.T) {
		c, err := smtp.Dial(nodePort(t, namespace, relaySTS, "smtp"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("someone@example.org", nil); err != nil {
			t.Fatal(err)
		}
		err = c.Rcpt("someone@example.net", nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Fatalf("RCPT for another domain: %v, want 554 5.7.1 Relay access denied", err)
		}
		if err := c.Rcpt("jane.doe@example.com", nil); err != nil {
			t.Fatalf("RCPT for a user of the managed domain: %v", err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "From: <someone@example.org>\r\nTo: <jane.doe@example.com>\r\nSubject: inbound\r\nMessage-ID: <inbound@cluster.test>\r\n\r\nhello\r\n")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		waitDelivered(t, "inbound@cluster.test")
	})

	t.Run("a domain's outbound route logs in with its tenant's credentials", func(t *testing.T) { routeLogsIn(t, sub) })

	t.Run("delivery events reach an endpoint with a private CA, signed, retried and in order", func(t *testing.T) {
		deliveryEvents(t, sub)
	})

	t.Run("postwarden queue lists a relay's queue from inside its pod", func(t *testing.T) {
		checkQueueTools(t, relaySTS+"-0")
	})

	var results []faultResult
	underLoad := func(name string, fault func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			l := startLoad(sub, "someone@example.org", strings.ReplaceAll(name, " ", "-"), 4, 200*time.Millisecond)
			time.Sleep(3 * time.Second)
			fault(t)
			time.Sleep(3 * time.Second)
			acked := l.finish()
			r := account(t, name, l, acked, 3*time.Minute)
			results = append(results, r)
			if r.acked == 0 {
				t.Errorf("no message was acknowledged during %s: the load did not run", name)
			}
			if r.lost > 0 {
				t.Errorf("%s: %d of %d acknowledged messages were not delivered", name, r.lost, r.acked)
			}
		})
	}

	underLoad("rolling restart of the relays", func(t *testing.T) {
		kube(t, "", "rollout", "restart", "-n", namespace, "statefulset/"+relaySTS)
		kube(t, "", "rollout", "status", "-n", namespace, "statefulset/"+relaySTS, "--timeout=5m")
	})

	underLoad("relays scaled from 2 to 1", func(t *testing.T) {
		start := time.Now()
		kube(t, "", "scale", "-n", namespace, "statefulset/"+relaySTS, "--replicas=1")
		kube(t, "", "wait", "-n", namespace, "--for=delete", "pod/"+relaySTS+"-1", "--timeout=3m")
		grace := kube(t, "", "get", "statefulset", "-n", namespace, relaySTS, "-o", "jsonpath={.spec.template.spec.terminationGracePeriodSeconds}")
		t.Logf("the leaving replica was gone %s after the scale-down (terminationGracePeriodSeconds %s)", time.Since(start).Round(time.Millisecond), grace)
		// The leaving replica drains its queue before it exits: nothing is left in its
		// spool for a replica that may never come back.
		if n := queuedFiles(t, "spool-"+relaySTS+"-1"); n != 0 {
			t.Errorf("the scaled-down replica left %d files in its queue", n)
		}
	})
	kube(t, "", "scale", "-n", namespace, "statefulset/"+relaySTS, "--replicas=2")
	kube(t, "", "rollout", "status", "-n", namespace, "statefulset/"+relaySTS, "--timeout=5m")

	underLoad("operator leader deleted", func(t *testing.T) {
		leader := operatorLeader(t)
		kube(t, "", "delete", "pod", "-n", namespace, leader, "--wait=false")
		start := time.Now()
		applyCredential(t, "after-failover")
		l := waitLogin(t, "after-failover-smtp", "billing@example.com")
		fresh := submitter{addr: sub.addr, roots: sub.roots, login: l}
		eventually(t, 2*time.Minute, "a credential made after the failover logs in", func() error {
			c, err := fresh.dial()
			if err != nil {
				return err
			}
			return c.Quit()
		})
		t.Logf("after deleting the leader %s, a new credential logged in after %s", leader, time.Since(start).Round(time.Millisecond))
		if newLeader := operatorLeader(t); newLeader == leader {
			t.Errorf("the deleted pod %s still leads", leader)
		}
	})

	underLoad("kill -9 of a relay process", func(t *testing.T) {
		pod := relaySTS + "-0"
		before := restarts(t, pod)
		id := strings.TrimPrefix(kube(t, "", "get", "pod", "-n", namespace, pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}"), "containerd://")
		out, err := exec.Command("ctr", "--address", filepath.Join(dir, "containerd", "containerd.sock"), "-n", "k8s.io",
			"tasks", "kill", "--signal", "SIGKILL", id).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr tasks kill: %v\n%s", err, out)
		}
		eventually(t, 3*time.Minute, "the killed relay restarts and is Ready", func() error {
			if restarts(t, pod) <= before {
				return errors.New("not restarted yet")
			}
			_, err := kubeErr("", "wait", "-n", namespace, "--for=condition=Ready", "pod/"+pod, "--timeout=1s")
			return err
		})
	})

	credentialLatencies := credentialPropagation(t, sub, 20)
	limitLatency := limitChange(t, sub)
	rss := residentMemory(t)

	fmt.Printf("\ntest/cluster: helm install to the first accepted mail: %s\n", firstMail.Round(time.Millisecond))
	fmt.Printf("test/cluster: SMTPCredential apply to first accepted login, %d changes: p50 %s, p99 %s\n",
		len(credentialLatencies), percentile(credentialLatencies, 50), percentile(credentialLatencies, 99))
	fmt.Printf("test/cluster: a lowered sending limit refused mail %s after the patch\n", limitLatency.Round(time.Millisecond))
	fmt.Printf("test/cluster: resident memory after the load: %s\n", strings.Join(rss, ", "))
	fmt.Printf("\n%-32s %8s %10s %5s %10s %14s\n", "fault", "acked", "delivered", "lost", "duplicate", "client errors")
	for _, r := range results {
		fmt.Printf("%-32s %8d %10d %5d %10d %14d\n", r.fault, r.acked, r.delivered, r.lost, r.duplicate, r.clientErrors)
	}
}
