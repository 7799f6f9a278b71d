package controllers

import (
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
)

// NewTestManager is NewManager for tests that start several managers in one process:
// controller names may repeat.
func NewTestManager(cfg *rest.Config, opts OperatorOptions) (ctrl.Manager, error) {
	skip := true
	testSkipNameValidation = &skip
	return NewManager(cfg, opts)
}

// SetShardBytes sets the shard size of managers set up afterwards.
func SetShardBytes(n int) { shardBytes = n }
