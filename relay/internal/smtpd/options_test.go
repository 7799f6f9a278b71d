package smtpd

import (
	"testing"
	"time"
)

func TestLimitsDefaults(t *testing.T) {
	cases := map[string]struct {
		in, want Limits
	}{
		"a zero Limits takes every default": {Limits{}, DefaultLimits()},
		"a set field is kept and the others default": {
			Limits{MaxRecipients: 5, DataTimeout: time.Second},
			func() Limits { l := DefaultLimits(); l.MaxRecipients = 5; l.DataTimeout = time.Second; return l }(),
		},
		"a negative field means the default, never unlimited": {
			Limits{MaxMessageBytes: -1, MaxConnectionsPerIP: -3},
			DefaultLimits(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := tc.in.withDefaults(); got != tc.want {
				t.Fatalf("withDefaults() = %+v, want %+v", got, tc.want)
			}
		})
	}
	d := DefaultLimits()
	for name, v := range map[string]int64{
		"MaxMessageBytes": d.MaxMessageBytes, "MaxRecipients": int64(d.MaxRecipients),
		"MaxLineLength": int64(d.MaxLineLength), "MaxHeaderBytes": int64(d.MaxHeaderBytes),
		"CommandTimeout": int64(d.CommandTimeout), "DataTimeout": int64(d.DataTimeout),
		"WriteTimeout": int64(d.WriteTimeout), "MaxConnections": int64(d.MaxConnections),
		"MaxConnectionsPerIP": int64(d.MaxConnectionsPerIP), "SoftErrorLimit": int64(d.SoftErrorLimit),
		"ErrorDelay": int64(d.ErrorDelay), "HardErrorLimit": int64(d.HardErrorLimit),
	} {
		if v <= 0 {
			t.Errorf("default %s is %d: every limit must exist", name, v)
		}
	}
}
