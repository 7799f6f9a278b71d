package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// Hops of a MailDomain that may log in: its own server (inboundDelivery) and its
// smarthost (outboundRoute).
const (
	HopInbound  = "inbound"
	HopOutbound = "outbound"
)

// RouteSecretName is the Secret, in the relays' namespace, that holds the copy of the
// credentials a MailDomain's hop logs in with. The operator derives it from the
// MailDomain alone, so a tenant cannot point a relay at another tenant's copy; a hash
// keeps it within the name limit for any namespace and name.
func RouteSecretName(namespace, mailDomain, hop string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + mailDomain + "/" + hop))
	return "postwarden-route-" + hop + "-" + hex.EncodeToString(sum[:10])
}

// RouteAuth is one hop's credentials as the spec names them, for the operator to copy.
type RouteAuth struct {
	// Source is the tenant's Secret.
	Source types.NamespacedName
	// Copy is the Secret the relays read (RouteSecretName).
	Copy string
	// MailDomain is the object the hop belongs to.
	MailDomain types.NamespacedName
	Hop        string
}

// RouteAuths lists the hops of md that log in.
func RouteAuths(md *relayv1alpha1.MailDomain) []RouteAuth {
	var out []RouteAuth
	add := func(hop string, a *relayv1alpha1.SMTPAuth) {
		if a == nil {
			return
		}
		out = append(out, RouteAuth{
			Source:     types.NamespacedName{Namespace: md.Namespace, Name: a.SecretRef.Name},
			Copy:       RouteSecretName(md.Namespace, md.Name, hop),
			MailDomain: types.NamespacedName{Namespace: md.Namespace, Name: md.Name},
			Hop:        hop,
		})
	}
	if in := md.Spec.InboundDelivery; in != nil {
		add(HopInbound, in.Auth)
	}
	if out := md.Spec.OutboundRoute; out != nil {
		add(HopOutbound, out.Auth)
	}
	return out
}

// buildRoutes sets the domain's hops in its snapshot entry. A hop that logs in names
// the copy of its credentials, never the credentials.
func buildRoutes(md *relayv1alpha1.MailDomain, entry *snapshot.Domain) error {
	hop := func(what, host string, port, defaultPort int32, auth *relayv1alpha1.SMTPAuth, name string) (*snapshot.Endpoint, error) {
		if port == 0 {
			port = defaultPort
		}
		if host == "" || port < 1 || port > 65535 {
			return nil, fmt.Errorf("%s %s:%d is not a host and port", what, host, port)
		}
		e := &snapshot.Endpoint{Host: host, Port: int(port)}
		if auth != nil {
			e.AuthSecret = RouteSecretName(md.Namespace, md.Name, name)
		}
		return e, nil
	}
	var err error
	if in := md.Spec.InboundDelivery; in != nil {
		if entry.InboundDelivery, err = hop("inbound delivery", in.Host, in.Port, 25, in.Auth, HopInbound); err != nil {
			return err
		}
	}
	if out := md.Spec.OutboundRoute; out != nil {
		if entry.OutboundRoute, err = hop("outbound route", out.Host, out.Port, 587, out.Auth, HopOutbound); err != nil {
			return err
		}
	}
	return nil
}

// routeCredentials says whether the relays have what md's hops log in with: "" when
// every hop that logs in has its credentials copied, else why not. Input.RouteSecrets
// holds what the operator found of each tenant Secret.
func (c *compilation) routeCredentials(md *relayv1alpha1.MailDomain) (problem string, hasAuth bool) {
	var problems []string
	for _, a := range RouteAuths(md) {
		hasAuth = true
		if p, ok := c.in.RouteSecrets[a.Source]; !ok {
			problems = append(problems, fmt.Sprintf("%s: Secret %s does not exist", hopField(a.Hop), a.Source.Name))
		} else if p != "" {
			problems = append(problems, fmt.Sprintf("%s: Secret %s %s", hopField(a.Hop), a.Source.Name, p))
		}
	}
	return strings.Join(problems, "; "), hasAuth
}

func hopField(hop string) string {
	if hop == HopInbound {
		return "inboundDelivery.auth"
	}
	return "outboundRoute.auth"
}
