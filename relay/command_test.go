package relay

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cfg, _, err := parseFlags([]string{"--config", "relay.json", "--hostname", "mx.example.org",
		"--inbound-proxy-protocol", "--trusted-proxies", "10.0.0.0/8, 192.0.2.7", "--grace-period", "1m",
		"--max-connections-per-ip", "5", "--inbound-listen", "", "--delivery-events-ca-file", "/etc/events-ca/ca.crt"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	if !slices.Equal(cfg.TrustedProxies, want) {
		t.Errorf("trusted proxies %v, want %v (a bare address is itself alone)", cfg.TrustedProxies, want)
	}
	if !cfg.Inbound.Proxy || cfg.Submission.Proxy {
		t.Errorf("proxy protocol: inbound %v, submission %v", cfg.Inbound.Proxy, cfg.Submission.Proxy)
	}
	if cfg.Inbound.Addr != "" || cfg.Submission.Addr != ":587" {
		t.Errorf("listeners %q and %q", cfg.Submission.Addr, cfg.Inbound.Addr)
	}
	if cfg.GracePeriod != time.Minute || cfg.Limits.MaxConnectionsPerIP != 5 || cfg.Hostname != "mx.example.org" {
		t.Errorf("config %+v", cfg)
	}
	if cfg.OutboundAllowedNetworks != nil {
		t.Errorf("outbound allowed networks %v by default, want none", cfg.OutboundAllowedNetworks)
	}
	if cfg.Delivery == nil || cfg.Delivery.Events.CAFile != "/etc/events-ca/ca.crt" {
		t.Errorf("delivery config %+v, want the delivery events CA file", cfg.Delivery)
	}
}

func TestParseFlagsOutboundAllowedNetworks(t *testing.T) {
	cfg, _, err := parseFlags([]string{"--config", "relay.json", "--outbound-allowed-networks", "127.0.0.0/8, ::1/128,10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.1.2.3/32")}
	if !slices.Equal(cfg.OutboundAllowedNetworks, want) {
		t.Errorf("outbound allowed networks %v, want %v", cfg.OutboundAllowedNetworks, want)
	}
}

func TestParseFlagsRefuses(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
	}{
		"a trusted proxy must be a CIDR or an address": {[]string{"--trusted-proxies", "10.0.0.0/33"}, "--trusted-proxies"},
		"an allowed outbound network must be a CIDR":   {[]string{"--outbound-allowed-networks", "localhost"}, "--outbound-allowed-networks"},
		"the log level must be known":                  {[]string{"--log-level", "loud"}, "--log-level"},
		"the log format must be known":                 {[]string{"--log-format", "xml"}, "--log-format"},
		"stray arguments are refused":                  {[]string{"--config", "x", "extra"}, "unexpected arguments"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseFlags(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}
