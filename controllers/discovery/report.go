package discovery

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/controllers/compiler"
	dstate "github.com/postwarden/postwarden/controllers/discovery/state"
	"github.com/postwarden/postwarden/relay/outbound"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/relay/tlspolicy"
)

// reportListMax bounds each list in a report mail.
const reportListMax = 1000

// reporter sends each policy's weekly report: an Event on the policy, and a mail to its
// reportRecipients through the relay's submission port.
type reporter struct {
	opts      Options
	apiReader client.Reader
	// sent is the slot last reported per policy, so a status the cache has not caught up
	// with yet never causes a second mail.
	sent map[types.UID]time.Time
	// retry is when a failed mail may be tried again (wall time), and the next backoff.
	retry map[types.UID]retryState
	// dial opens the connection to the relay; tests may replace it.
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

type retryState struct {
	at      time.Time
	backoff time.Duration
}

func newReporter(opts Options, apiReader client.Reader) *reporter {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &reporter{opts: opts, apiReader: apiReader, sent: map[types.UID]time.Time{}, retry: map[types.UID]retryState{},
		dial: func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }}
}

// run reports every policy whose scheduled slot has passed since its last report.
func (rp *reporter) run(ctx context.Context, r *reconciler, snap *snapshot.Snapshot, now time.Time) error {
	for _, dp := range snap.DiscoveryPolicies {
		memo := r.policies[dp.Name]
		if memo == nil || memo.stored == nil {
			continue // not merged yet: nothing to report from
		}
		ns, n, _ := strings.Cut(dp.Name, "/")
		var obj relayv1alpha1.DiscoveryPolicy
		if err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: n}, &obj); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		slot := reportSlot(obj.Spec.ReportSchedule, now)
		from := obj.CreationTimestamp.Time
		if t := obj.Status.LastReportTime; t != nil {
			from = t.Time
		}
		if !slot.After(from) || !slot.After(rp.sent[obj.UID]) {
			continue
		}
		if rs, ok := rp.retry[obj.UID]; ok && r.wall.Now().Before(rs.at) {
			continue
		}
		var domains []string
		if p, ok := dstate.PolicyFor(snap, dp.Name); ok {
			for _, d := range p.Domains {
				domains = append(domains, d.Name)
			}
		}
		rep := buildReport(&obj, domains, memo.stored, from, now)
		mailed := ""
		if len(obj.Spec.ReportRecipients) > 0 && rp.opts.ReportRelay != "" {
			if err := rp.send(ctx, rep, now); err != nil {
				rs := rp.retry[obj.UID]
				rs.backoff = min(max(2*rs.backoff, r.opts.MergeInterval), time.Hour)
				rs.at = r.wall.Now().Add(rs.backoff)
				rp.retry[obj.UID] = rs
				logf.FromContext(ctx).Error(err, "sending the discovery report", "policy", dp.Name, "retryIn", rs.backoff)
				r.recorder.Eventf(&obj, nil, corev1.EventTypeWarning, relayv1alpha1.EventDiscoveryReportFailed, "Report",
					"the report mail to %s could not be sent (retrying in %s): %v", strings.Join(obj.Spec.ReportRecipients, ", "), rs.backoff, err)
				continue
			}
			mailed = "; mailed to " + strings.Join(obj.Spec.ReportRecipients, ", ")
		}
		delete(rp.retry, obj.UID)
		rp.sent[obj.UID] = slot
		r.recorder.Eventf(&obj, nil, corev1.EventTypeNormal, relayv1alpha1.EventDiscoveryReport, "Report", "%s%s", rep.summary, mailed)
		before := obj.DeepCopy()
		t := metav1.NewTime(now.UTC().Truncate(time.Second))
		obj.Status.LastReportTime = &t
		if err := r.client.Status().Patch(ctx, &obj, client.MergeFrom(before), client.FieldOwner(r.opts.FieldOwner)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("recording the report of %s: %w", dp.Name, err)
		}
	}
	return nil
}

// reportSlot is the latest scheduled report time at or before now: the schedule's
// weekday at its HH:MM, UTC (Monday 08:00 by default).
func reportSlot(rs *relayv1alpha1.ReportSchedule, now time.Time) time.Time {
	day, hhmm := "Monday", "08:00"
	if rs != nil {
		if rs.DayOfWeek != "" {
			day = rs.DayOfWeek
		}
		if rs.TimeOfDay != "" {
			hhmm = rs.TimeOfDay
		}
	}
	weekday := time.Monday
	for d := time.Sunday; d <= time.Saturday; d++ {
		if d.String() == day {
			weekday = d
		}
	}
	var hh, mm int
	if _, err := fmt.Sscanf(hhmm, "%d:%d", &hh, &mm); err != nil {
		hh, mm = 8, 0
	}
	now = now.UTC()
	slot := time.Date(now.Year(), now.Month(), now.Day(), hh, mm, 0, 0, time.UTC)
	slot = slot.AddDate(0, 0, -((int(now.Weekday()) - int(weekday) + 7) % 7))
	if slot.After(now) {
		slot = slot.AddDate(0, 0, -7)
	}
	return slot
}

// report is one built report.
type report struct {
	from    string
	to      []string
	subject string
	body    string
	summary string
}

// buildReport lists the users and aliases that entered their state after from.
func buildReport(p *relayv1alpha1.DiscoveryPolicy, domains []string, st *storedState, from, now time.Time) report {
	var users, aliases []dstate.Address
	for _, a := range st.state.Addresses {
		if !a.Since.After(from) {
			continue
		}
		switch a.State {
		case snapshot.DiscoveredUser:
			users = append(users, a)
		case snapshot.DiscoveredAlias:
			aliases = append(aliases, a)
		}
	}
	c := st.state.Counts()
	name := p.Namespace + "/" + p.Name
	period := fmt.Sprintf("%s to %s", from.UTC().Format("2006-01-02 15:04"), now.UTC().Format("2006-01-02 15:04 UTC"))
	rep := report{
		from:    compiler.ReportSender(domains),
		to:      slices.Clone(p.Spec.ReportRecipients),
		subject: fmt.Sprintf("SMTP Discovery report for %s: %s, %s", name, plural(len(users), "new user"), plural(len(aliases), "new alias")),
		summary: fmt.Sprintf("%s to %s: %s, %s; tracking %d users, %d aliases, %d pending, %d invalid",
			from.UTC().Format(time.DateOnly), now.UTC().Format(time.DateOnly), plural(len(users), "new user"), plural(len(aliases), "new alias"),
			c.Users, c.Aliases, c.Pending, c.Invalid),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SMTP Discovery report of DiscoveryPolicy %s\r\nDomains: %s\r\nPeriod: %s\r\n\r\n", name, strings.Join(domains, ", "), period)
	list := func(title string, as []dstate.Address, line func(a dstate.Address) string) {
		fmt.Fprintf(&b, "%s (%d):\r\n", title, len(as))
		for i, a := range as {
			if i == reportListMax {
				fmt.Fprintf(&b, "  ... and %d more\r\n", len(as)-i)
				break
			}
			fmt.Fprintf(&b, "  %s  (since %s)\r\n", line(a), a.Since.UTC().Format(time.RFC3339))
		}
	}
	list("New users", users, func(a dstate.Address) string { return a.Address + ", " + a.Reason })
	b.WriteString("\r\n")
	list("New aliases", aliases, func(a dstate.Address) string { return a.Address + " -> " + a.Target })
	fmt.Fprintf(&b, "\r\nNow tracking: %d users, %d aliases, %d pending, %d invalid.\r\n", c.Users, c.Aliases, c.Pending, c.Invalid)
	if home := st.namespace(); home != "" {
		fmt.Fprintf(&b, "The full list is kept by the operator, in the ConfigMaps %s of namespace %s (key %s):\r\n"+
			"ask your cluster admin for it.\r\n", strings.Join(st.names(), ", "), home, dstate.StateKey)
	}
	b.WriteString("To make a discovered address permanent, add it to the MailDomain's spec.\r\n")
	rep.body = b.String()
	return rep
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// message renders the report as an RFC 5322 message.
func (rep report) message(now time.Time, hostname string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Date: %s\r\n", now.UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.discovery-report@%s>\r\n", strings.ToLower(rand.Text()), hostname)
	fmt.Fprintf(&b, "From: Postwarden <%s>\r\n", rep.from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(rep.to, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", rep.subject)
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(rep.body)
	return b.Bytes()
}

// send submits the report to Options.ReportRelay through the outbound client: STARTTLS
// verified for the relay's own name (against the CA of the relay certificate's Secret
// when it has one, else the system roots), then AUTH with the report credential.
func (rp *reporter) send(ctx context.Context, rep report, now time.Time) error {
	if rep.from == "" {
		return fmt.Errorf("the policy covers no domain to send from")
	}
	var secret corev1.Secret
	if err := rp.apiReader.Get(ctx, types.NamespacedName{Namespace: rp.opts.Namespace, Name: rp.opts.ReportSecret}, &secret); err != nil {
		return fmt.Errorf("reading the report credential: %w", err)
	}
	policy := tlspolicy.Policy{Mode: tlspolicy.RequireVerifiedTLS, MinVersion: tls.VersionTLS12}
	var certSecret corev1.Secret
	err := rp.apiReader.Get(ctx, types.NamespacedName{Namespace: rp.opts.Namespace, Name: rp.opts.CertificateSecret}, &certSecret)
	switch {
	case err == nil && len(certSecret.Data["ca.crt"]) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(certSecret.Data["ca.crt"]) {
			return fmt.Errorf("the relay certificate Secret's ca.crt holds no certificate")
		}
		policy.Roots = pool
	case err != nil && !apierrors.IsNotFound(err):
		return fmt.Errorf("reading the relay certificate Secret: %w", err)
	}
	host, portText, err := net.SplitHostPort(rp.opts.ReportRelay)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		return fmt.Errorf("--report-relay %q is not host:port", rp.opts.ReportRelay)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	d := outbound.New(outbound.Options{
		Dial:           func(ctx context.Context, _, addr string) (net.Conn, error) { return rp.dial(ctx, addr) },
		ConnectTimeout: 10 * time.Second, CommandTimeout: time.Minute, DataTimeout: time.Minute,
	})
	serverName := rp.opts.ReportServerName
	// AdminNamed: the guard against non-public addresses stops tenants and DNS from
	// pointing the relay at internal services; --report-relay is named by the admin and
	// is the relay's own Service, on a cluster address the guard would refuse.
	c, err := d.Dial(ctx, outbound.Host{Name: host, Port: port, AdminNamed: true}, outbound.Params{
		Policy: policy, ServerName: serverName,
		Auth: &outbound.Credentials{Username: string(secret.Data["username"]), Password: string(secret.Data["password"])},
	})
	if err != nil {
		return err
	}
	// The minute bounds the whole exchange, not only each command.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer func() {
		stop()
		_ = c.Close()
	}()
	if err := c.SendMail(rep.from, rep.to, bytes.NewReader(rep.message(now, serverName))); err != nil {
		return err
	}
	return c.Quit()
}
