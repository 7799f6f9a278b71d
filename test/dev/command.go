package dev

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Run is the `postwarden dev` command: it starts the environment, prints how to use it,
// and runs until ctx ends (Ctrl-C).
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("postwarden dev", flag.ContinueOnError)
	var opts Options
	var infoFile string
	fs.StringVar(&opts.Dir, "dir", ".dev", "folder for the CA, kubeconfig, spool, received mail and logs")
	fs.StringVar(&opts.SubmissionAddr, "submission-listen", "127.0.0.1:2587", "relay submission address (STARTTLS and AUTH)")
	fs.StringVar(&opts.InboundAddr, "inbound-listen", "127.0.0.1:2525", "relay inbound address (mail for the managed domains)")
	fs.StringVar(&opts.SinkAddr, "sink-listen", "127.0.0.1:2526", "stand-in mail server: the smarthost and the samples' inbound destination")
	fs.StringVar(&opts.HTTPAddr, "http-listen", "127.0.0.1:9090", "relay /metrics, /healthz and /readyz")
	fs.StringVar(&opts.SamplesNamespace, "namespace", "mail", "namespace for config/samples")
	fs.BoolVar(&opts.NoSamples, "no-samples", false, "apply no samples: start empty")
	fs.StringVar(&infoFile, "info", "", "also write the connection facts as JSON to this file (keys: submission, inbound, username, password, sender, localRecipient, caFile, kubeconfig, sinkDir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	env, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	defer env.Stop()
	if infoFile != "" {
		data, err := json.MarshalIndent(env.Info, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(infoFile, append(data, '\n'), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", infoFile, err)
		}
	}
	printSummary(os.Stdout, env, opts.withDefaults())
	select {
	case <-ctx.Done():
		fmt.Println("\ndev: stopping")
		return env.Stop()
	case err := <-env.Failed():
		return err
	}
}

func printSummary(w io.Writer, env *Env, opts Options) {
	i := env.Info
	rel := func(p string) string {
		if wd, err := os.Getwd(); err == nil {
			if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
				return r
			}
		}
		return p
	}
	fmt.Fprintf(w, "\nPostwarden is running on loopback. Ctrl-C stops it.\n\n")
	fmt.Fprintf(w, "  submission   %s   (STARTTLS, then AUTH; certificate for %q)\n", i.Submission, RelayHostname)
	fmt.Fprintf(w, "  inbound      %s\n", i.Inbound)
	if i.Username != "" {
		fmt.Fprintf(w, "  username     %s\n", i.Username)
		fmt.Fprintf(w, "  password     %s\n", i.Password)
		fmt.Fprintf(w, "  sender       %s   (an address the credential may use)\n", i.Sender)
		fmt.Fprintf(w, "  local user   %s\n", i.LocalRecipient)
	}
	fmt.Fprintf(w, "  CA file      %s\n", rel(i.CAFile))
	fmt.Fprintf(w, "  mail sink    %s, each mail saved in %s\n", env.Sink.Addr, rel(i.SinkDir))
	fmt.Fprintf(w, "  metrics      http://%s/metrics\n", opts.HTTPAddr)
	fmt.Fprintf(w, "  logs         %s\n", rel(filepath.Join(opts.Dir, "postwarden.log")))
	if i.Username != "" {
		host, port, _ := splitHostPort(i.Submission)
		fmt.Fprintf(w, "\nSend a first mail (it lands in the sink, which prints it here):\n\n")
		fmt.Fprintf(w, "  swaks --server %s --port %d --tls --tls-verify --tls-ca-path %s --tls-sni %s \\\n", host, port, rel(i.CAFile), RelayHostname)
		fmt.Fprintf(w, "    --auth PLAIN --auth-user '%s' --auth-password '%s' \\\n", i.Username, i.Password)
		fmt.Fprintf(w, "    --from %s --to someone@example.org\n", i.Sender)
		fmt.Fprintf(w, "\nAnd one inbound, for a user of the sample domain:\n\n")
		ihost, iport, _ := splitHostPort(i.Inbound)
		fmt.Fprintf(w, "  swaks --server %s --port %d --from someone@example.org --to %s\n", ihost, iport, i.LocalRecipient)
		_, domain, _ := strings.Cut(i.LocalRecipient, "@")
		fmt.Fprintf(w, "\nAn unknown recipient of the sample domain goes through an SMTP Discovery callout\n")
		fmt.Fprintf(w, "to the sink, then shows in `kubectl get discoverypolicies -n %s -o yaml`:\n\n", opts.SamplesNamespace)
		fmt.Fprintf(w, "  swaks --server %s --port %d --from someone@example.org --to new.person@%s\n", ihost, iport, domain)
		fmt.Fprintf(w, "\nOutbound mail of %s is DKIM-signed (see DKIM-Signature in the sink's copy): the\n", domain)
		fmt.Fprintf(w, "records to publish, and whether the loopback DNS has them, are in the MailDomain's status;\n")
		fmt.Fprintf(w, "the credential's sending limits, and when it last hit one, in the SMTPCredential's:\n\n")
		fmt.Fprintf(w, "  %s get maildomains -n %s -o jsonpath='{.items[0].status.dkim}'\n", rel(env.Kubectl), opts.SamplesNamespace)
		fmt.Fprintf(w, "  %s get smtpcredentials -n %s -o wide\n", rel(env.Kubectl), opts.SamplesNamespace)
	}
	fmt.Fprintf(w, "\nThe queue (as mailq and postsuper), and each message's life in the log:\n\n")
	fmt.Fprintf(w, "  %s queue list --spool-dir %s\n", rel(os.Args[0]), rel(filepath.Join(opts.Dir, "spool")))
	fmt.Fprintf(w, "  jq -c 'select(.msg == \"message\") | {event, queue_id, sender, recipient}' %s\n",
		rel(filepath.Join(opts.Dir, "postwarden.log")))
	fmt.Fprintf(w, "\nThe API server:\n\n  export KUBECONFIG=%s\n  %s get postwarden -A\n\n", rel(i.Kubeconfig), rel(env.Kubectl))
}
