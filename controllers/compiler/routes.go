package compiler

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
	"github.com/postwarden/postwarden/relay/snapshot"
)

// What a MailDomain gives the relays a secret for: logging in to its own server
// (inboundDelivery) or its smarthost (outboundRoute), and signing its delivery events.
const (
	HopInbound  = "inbound"
	HopOutbound = "outbound"
	UseEvents   = "events"
)

// RouteSecretName is the Secret, in the relays' namespace, that holds the copy of a
// MailDomain's secret for one use (a hop's credentials, or its events' key). The operator derives it from the
// MailDomain alone, so a tenant cannot point a relay at another tenant's copy; a hash
// keeps it within the name limit for any namespace and name.
func RouteSecretName(namespace, mailDomain, hop string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + mailDomain + "/" + hop))
	return "postwarden-route-" + hop + "-" + hex.EncodeToString(sum[:10])
}

// RelaySecret is one secret a MailDomain gives the relays, as the spec names it, for
// the operator to copy.
type RelaySecret struct {
	// Source is the tenant's Secret.
	Source types.NamespacedName
	// Copy is the Secret the relays read (RouteSecretName).
	Copy string
	// MailDomain is the object the secret belongs to.
	MailDomain types.NamespacedName
	// Hop is what it is for: HopInbound, HopOutbound or UseEvents.
	Hop string
}

// Field is the spec field that names the secret, for messages.
func (a RelaySecret) Field() string {
	switch a.Hop {
	case HopInbound:
		return "inboundDelivery.auth"
	case HopOutbound:
		return "outboundRoute.auth"
	}
	return "deliveryEvents.secretRef"
}

// RelaySecrets lists the secrets md gives the relays.
func RelaySecrets(md *relayv1alpha1.MailDomain) []RelaySecret {
	var out []RelaySecret
	add := func(hop, name string) {
		out = append(out, RelaySecret{
			Source:     types.NamespacedName{Namespace: md.Namespace, Name: name},
			Copy:       RouteSecretName(md.Namespace, md.Name, hop),
			MailDomain: types.NamespacedName{Namespace: md.Namespace, Name: md.Name},
			Hop:        hop,
		})
	}
	if in := md.Spec.InboundDelivery; in != nil && in.Auth != nil {
		add(HopInbound, in.Auth.SecretRef.Name)
	}
	if out := md.Spec.OutboundRoute; out != nil && out.Auth != nil {
		add(HopOutbound, out.Auth.SecretRef.Name)
	}
	if ev := md.Spec.DeliveryEvents; ev != nil {
		add(UseEvents, ev.SecretRef.Name)
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
	if ev := md.Spec.DeliveryEvents; ev != nil {
		entry.DeliveryEvents = &snapshot.Webhook{URL: ev.URL, SecretName: RouteSecretName(md.Namespace, md.Name, UseEvents)}
		for _, t := range ev.Events {
			entry.DeliveryEvents.Events = append(entry.DeliveryEvents.Events, string(t))
		}
		slices.Sort(entry.DeliveryEvents.Events)
	}
	return nil
}

// relaySecrets says whether the relays have every secret md gives them: "" when each
// is copied, else why not. Input.SecretProblems holds what the operator found.
func (c *compilation) relaySecrets(md *relayv1alpha1.MailDomain) (problem string, has bool) {
	var problems []string
	for _, a := range RelaySecrets(md) {
		has = true
		if p, ok := c.in.SecretProblems[a.Copy]; !ok {
			problems = append(problems, fmt.Sprintf("%s: Secret %s does not exist", a.Field(), a.Source.Name))
		} else if p != "" {
			problems = append(problems, fmt.Sprintf("%s: Secret %s %s", a.Field(), a.Source.Name, p))
		}
	}
	return strings.Join(problems, "; "), has
}
